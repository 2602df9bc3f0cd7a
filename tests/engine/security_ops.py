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


class Trojan:
    """A value whose unpickling runs a command: what a teammate's op could return."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@jf.op
def trojan(marker):
    return Trojan(marker)


@jf.op
def connect(creds, pg_dsn, pwd, apikey, credential, url, n):
    return len(creds + pg_dsn + pwd + apikey + credential + url) + n
