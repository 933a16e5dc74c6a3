# SPDX-License-Identifier: Apache-2.0
"""Journals: a person's (or an app key's) private entries, sealed at rest."""
