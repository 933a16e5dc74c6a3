# SPDX-License-Identifier: Apache-2.0
"""Password hashing: argon2id by default, bcrypt selectable, both always verifiable.

* argon2id defaults: m=19 MiB, t=2, p=1 (OWASP Password Storage Cheat Sheet, first option;
  ASVS 5 11.4.2). Production refuses anything weaker; tests lower the cost through settings.
* bcrypt (12 rounds) only reads 72 bytes. Bastion never truncates: the password is first reduced
  to HMAC-SHA256 (fixed, public key: this is domain separation, not a pepper) and base64-encoded
  (44 ASCII bytes, no NUL), and the result is stored with the ``$bastion-bcrypt-sha256$`` prefix so
  it can never be confused with a plain bcrypt hash.
* ``needs_rehash`` is true when a stored hash uses another algorithm or weaker parameters than the
  configured ones: login then rehashes transparently.
* Hashing is CPU- and memory-heavy and blocking: ``HashingPool`` runs it on a bounded thread pool
  owned by the app, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import bcrypt
from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import ARGON2_VERSION

from bastion.auth.policy import MAX_PASSWORD_LENGTH

BCRYPT_PREFIX = "$bastion-bcrypt-sha256$"
_PREHASH_KEY = b"bastion.bcrypt.prehash.v1"

Algorithm = Literal["argon2", "bcrypt"]


class PasswordTooLong(ValueError):
    """Refused before any hashing: a 10 MB password must not cost 10 MB of KDF input."""


@dataclass(frozen=True, slots=True)
class HashParameters:
    algorithm: Algorithm = "argon2"
    argon2_memory_kib: int = 19_456
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    bcrypt_rounds: int = 12


def _bcrypt_input(password: str) -> bytes:
    digest = hmac.new(_PREHASH_KEY, password.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest)


class PasswordHasher:
    """Synchronous hashing and verification (call it through ``HashingPool`` from async code)."""

    def __init__(self, parameters: HashParameters | None = None) -> None:
        self.parameters = parameters or HashParameters()
        p = self.parameters
        self._argon2 = Argon2Hasher(
            time_cost=p.argon2_time_cost,
            memory_cost=p.argon2_memory_kib,
            parallelism=p.argon2_parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )

    @staticmethod
    def _bounded(password: str) -> bytes:
        if len(password) > MAX_PASSWORD_LENGTH:
            raise PasswordTooLong(f"passwords are at most {MAX_PASSWORD_LENGTH} characters")
        return password.encode("utf-8")

    def hash(self, password: str) -> str:
        encoded = self._bounded(password)
        if self.parameters.algorithm == "bcrypt":
            salt = bcrypt.gensalt(rounds=self.parameters.bcrypt_rounds)
            return BCRYPT_PREFIX + bcrypt.hashpw(_bcrypt_input(password), salt).decode("ascii")
        return self._argon2.hash(encoded)

    def verify(self, stored: str, password: str) -> bool:
        """Whether ``password`` matches ``stored``; malformed or unknown hashes never match."""
        self._bounded(password)
        if stored.startswith(BCRYPT_PREFIX):
            try:
                return bcrypt.checkpw(_bcrypt_input(password), stored[len(BCRYPT_PREFIX) :].encode("ascii"))
            except (ValueError, UnicodeEncodeError):
                return False
        if stored.startswith("$argon2"):
            try:
                return self._argon2.verify(stored, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False
        return False

    def needs_rehash(self, stored: str) -> bool:
        """True when ``stored`` is another algorithm or weaker than the configured parameters."""
        p = self.parameters
        if stored.startswith(BCRYPT_PREFIX):
            if p.algorithm != "bcrypt":
                return True
            try:
                rounds = int(stored[len(BCRYPT_PREFIX) :].split("$")[2])
            except (IndexError, ValueError):
                return True
            return rounds < p.bcrypt_rounds
        if p.algorithm != "argon2":
            return True
        try:
            header = stored.split("$")
            variant, version, params = header[1], header[2], header[3]
            values = dict(item.split("=", 1) for item in params.split(","))
            return (
                variant != "argon2id"
                or version != f"v={ARGON2_VERSION}"
                or int(values["m"]) < p.argon2_memory_kib
                or int(values["t"]) < p.argon2_time_cost
                or int(values["p"]) < p.argon2_parallelism
            )
        except (IndexError, ValueError, KeyError):
            return True


class HashingPool:
    """Runs a ``PasswordHasher`` on a bounded thread pool owned by the app (``close()`` at shutdown).

    ``dummy_verify`` spends the same work as a real verification: login runs it for unknown
    emails so the response time does not tell whether an account exists.
    """

    def __init__(self, hasher: PasswordHasher, *, workers: int = 4) -> None:
        self.hasher = hasher
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bastion-hash")
        self._dummy: str | None = None  # made on first use, on the pool like every hash

    async def _run(self, fn: object, *args: str) -> object:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)  # type: ignore[arg-type]

    async def hash(self, password: str) -> str:
        self.hasher._bounded(password)
        result = await self._run(self.hasher.hash, password)
        return str(result)

    async def verify(self, stored: str, password: str) -> bool:
        self.hasher._bounded(password)
        return bool(await self._run(self.hasher.verify, stored, password))

    async def dummy_verify(self, password: str) -> None:
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(24))
        await self.verify(self._dummy, password)

    def needs_rehash(self, stored: str) -> bool:
        return self.hasher.needs_rehash(stored)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
