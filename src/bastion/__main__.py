# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

from bastion.cli import main

main()
