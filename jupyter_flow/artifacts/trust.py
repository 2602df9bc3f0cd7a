"""Trusting other users' keys: ``jupyter flow trust add|rm|list|key``.

Trusting a user means: their pickled results may be unpickled in your processes, which
runs code they chose. A key is pinned in your own ``trusted.json`` (``keyring.py``); the
store only tells you which keys a user has published, and anyone who can write the store
can publish a key under any name — so the id of each key pinned is printed, to be checked
with its owner (``jupyter flow trust key`` on their side), or given outright with ``--key``.
A group is resolved to its members once, when it is added (its members' keys are pinned;
``add --group`` again picks up new members).
"""

from __future__ import annotations

from typing import Any

from jupyter_flow.artifacts.keyring import Keyring, KeyringError, key_id, load_keyring, trust, untrust


def keyring() -> Keyring:
    """This user's keyring (made on first use)."""
    return load_keyring()


def listing(ring: Keyring) -> list[dict[str, Any]]:
    """One row per trusted key: user, key_id, via, added."""
    ordered = sorted(ring.trusted().items(), key=lambda item: (item[1].get("user") or "", item[0]))
    return [{"user": entry.get("user"), "key_id": ident, "via": entry.get("via", "user"),
             "added": entry.get("added")} for ident, entry in ordered]


def group_members(group: str) -> list[str]:
    """Members of an OS group (its member list and the users whose primary group it is)."""
    import grp
    import pwd

    try:
        entry = grp.getgrnam(group)
    except KeyError:
        raise KeyringError(f"there is no group {group!r} on this machine (getent group {group})") from None
    members = set(entry.gr_mem)
    members.update(user.pw_name for user in pwd.getpwall() if user.pw_gid == entry.gr_gid)
    return sorted(members)


def add(ring: Keyring, store, name: str, *, group: bool = False, public_key: str | None = None) -> list[str]:
    """Trust ``name`` (a user, or with ``group`` each member of a group); returns lines to print."""
    if group:
        if public_key:
            raise KeyringError("--key names one user's key; give a user, not --group")
        lines = []
        for member in group_members(name):
            if member == ring.user:
                continue
            published = _published(store, member)
            if not published:
                lines.append(f"{member}: has published no key yet (skipped; add the group again later)")
                continue
            added = trust(ring, member, published, via=f"group:{name}")
            lines += [_pinned(member, ident) for ident in added] or [f"{member}: already trusted"]
        return lines or [f"group {name!r} has no other members"]
    if name == ring.user and public_key is None:
        return [f"{name} is you: your own artifacts are always trusted"]
    if public_key is not None:
        keys = {key_id(_decode(public_key, name)): public_key.strip()}
    else:
        keys = _published(store, name)
        if not keys:
            raise KeyringError(
                f"{name} has published no signing key in the store at {store.location}: ask them to run any "
                f"flow once (that publishes it), or to send you their key (`jupyter flow trust key`) and use --key"
            )
    added = trust(ring, name, keys, via="user")
    return [_pinned(name, ident) for ident in added] or [f"{name}: already trusted"]


def remove(ring: Keyring, name: str, *, group: bool = False) -> list[str]:
    gone = untrust(ring, name, group=group)
    what = f"group {name!r}" if group else name
    if not gone:
        return [f"{what}: nothing was trusted"]
    return [f"no longer trusted: {what} (keys {', '.join(gone)}); their pickled results are not loaded "
            "in your processes any more"]


def _published(store, user: str) -> dict[str, str]:
    return {row["key_id"]: row["public_key"] for row in store.signers(user)
            if key_id(_decode(row["public_key"], user)) == row["key_id"]}


def _decode(public_key: str, user: str) -> bytes:
    import base64

    try:
        raw = base64.b64decode(public_key.strip(), validate=True)
    except (ValueError, TypeError):
        raise KeyringError(f"the key given for {user} is not a base64 public key "
                           "(`jupyter flow trust key` prints one)") from None
    if len(raw) != 32:
        raise KeyringError(f"the key given for {user} is not an Ed25519 public key (32 bytes)")
    return raw


def _pinned(user: str, ident: str) -> str:
    return (f"trusted {user}: key {ident} (check this id with {user}: `jupyter flow trust key` prints theirs); "
            f"their pickled results now load in your processes")
