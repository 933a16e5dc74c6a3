# SPDX-License-Identifier: Apache-2.0
"""HTTP adapters: thin routers, dependencies and schemas."""
