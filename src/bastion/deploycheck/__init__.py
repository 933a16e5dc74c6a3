# SPDX-License-Identifier: Apache-2.0
"""`bastion check`: the configuration and a running instance, audited as a security reviewer would."""
