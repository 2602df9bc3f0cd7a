"""Ops for the security tests: pickled results, and an op reading a module-level secret."""

import jupyter_flow as jf

API_TOKEN = "s3cr3t"  # shipped to workers with the op (this module is pickled by value)


@jf.op
def as_set(n):
    return set(range(n))  # not JSON: stored by cloudpickle, so signed


@jf.op
def size(values):
    return len(values)


@jf.op
def call_api(n):
    return len(API_TOKEN) + n


@jf.op
def connect(creds, pg_dsn, pwd, apikey, credential, url, n):
    return len(creds + pg_dsn + pwd + apikey + credential + url) + n
