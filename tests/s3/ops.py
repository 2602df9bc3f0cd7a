"""Ops the S3 tests run on the S3 test cluster (a local module: shipped to workers by value)."""

import os

import jupyter_flow as jf


@jf.op
def numbers(n):
    return list(range(n))


@jf.op
def as_set(values):
    return set(values)  # a pickle: signed by the worker with the user's key


@jf.op
def summary(values, seen):
    return {"total": sum(values), "distinct": len(seen), "pid": os.getpid(),
            "has_credentials": bool(os.environ.get("AWS_SECRET_ACCESS_KEY"))}
