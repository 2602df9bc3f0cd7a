"""The ``FlowError`` family: every error jupyter_flow raises on purpose.

Messages name the op, cell, run or field involved and say what to do next.
"""

from __future__ import annotations


class FlowError(Exception):
    """Base class of every error jupyter_flow raises on purpose.

    >>> try:
    ...     raise FlowError("op 'clean': bad argument")
    ... except FlowError as err:
    ...     print(err)
    op 'clean': bad argument
    """


class OpTimeout(FlowError):
    """An op ran longer than its ``timeout`` (after all retries)."""


class WorkerLost(FlowError):
    """The worker running an op died more often than the scheduler allows."""


class RunCanceled(FlowError):
    """The run was canceled before the requested target finished."""


class RunLost(FlowError):
    """The process that owned the run stopped heartbeating; resume it with ``jf.resume``."""


class StoreError(FlowError):
    """The metadata store cannot be used as asked."""


class StoreVersionError(StoreError):
    """The store was written by a newer jupyter_flow than the one running."""


class StoreFull(StoreError):
    """The disk holding the store is full: the write was not recorded."""


class StoreReadOnly(StoreError):
    """The store's file (or its directory) cannot be written: nothing was read or written."""


class FencedWrite(StoreError):
    """A write to a run or task that is already final (or owned by someone else)."""


class ArtifactError(FlowError):
    """An artifact cannot be read back as written; the engine recomputes its producer."""

    def __init__(self, message: str, digest: str | None = None):
        super().__init__(message)
        self.digest = digest


class ArtifactMissing(ArtifactError):
    """No artifact with that hash exists in the store."""


class ArtifactCorrupt(ArtifactError):
    """The artifact's bytes no longer hash to its name."""


class ArtifactUntrusted(ArtifactError):
    """A pickled artifact has no valid signature of a key this user holds or trusts, so it
    is never unpickled (it may have been planted, or come from another user)."""


class ArtifactForeign(ArtifactUntrusted):
    """A pickled artifact signed by another user's key, one this user does not trust
    (``jupyter flow trust add USER`` trusts it); ``producer`` names them."""

    def __init__(self, message: str, digest: str | None = None, *, signer: str | None = None,
                 producer: str | None = None):
        super().__init__(message, digest)
        self.signer = signer
        self.producer = producer


class SerializationError(FlowError):
    """A value could not be serialized by any registered serializer."""
