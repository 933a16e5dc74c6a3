# SPDX-License-Identifier: Apache-2.0
"""The networks each administrator signs in from, remembered in the database.

A sign-in from a network the administrator never used before may be a stolen password in use.
Networks are IPv4 /24 and IPv6 /64 (a home or office line, not one address that changes daily).
The very first sign-in of an administrator is remembered without an alert: there is nothing to
compare it with, and every new deployment would otherwise start with one alert per admin.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.addresses import counted_as, parse_address
from bastion.alerts.models import AdminNetwork
from bastion.alerts.repository import AlertRepository
from bastion.auth.models import User
from bastion.auth.principal import Role
from bastion.crypto.randomness import new_id
from bastion.db.session import unit_of_work
from bastion.db.types import utcnow

IPV4_PREFIX = 24
IPV6_PREFIX = 64


def network_of(ip: str) -> str | None:
    """The network an address is remembered by; None when ``ip`` is not an address."""
    address = parse_address(ip)
    if address is None:
        return None
    if address.version == 4:
        return str(ipaddress.IPv4Network((address, IPV4_PREFIX), strict=False))
    return counted_as(str(address), IPV6_PREFIX)


class AdminNetworks:
    def __init__(
        self, *, sessionmaker: async_sessionmaker[AsyncSession], clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.sessionmaker = sessionmaker
        self.clock = clock

    async def is_new(self, user_id: str, ip: str, role: str | None) -> str | None:
        """Remember an administrator's sign-in: the network when it is one not seen before.

        ``role`` None (a feed that does not know it) is read from the account. Not an
        administrator, not an address, the first sign-in ever, or a known network: None.
        """
        network = network_of(ip)
        if network is None:
            return None
        now = self.clock()
        try:
            async with unit_of_work(self.sessionmaker) as session:
                if role is None:
                    user = await session.get(User, user_id)
                    role = user.role if user is not None else None
                if role != Role.ADMIN:
                    return None
                known = {row.network: row for row in await AlertRepository(session).networks_of(user_id)}
                if network in known:
                    known[network].last_seen = now
                    return None
                session.add(
                    AdminNetwork(id=new_id(), user_id=user_id, network=network, first_seen=now, last_seen=now)
                )
                first = not known
        except IntegrityError:
            return None  # another instance recorded this network at the same moment, and decided
        return None if first else network
