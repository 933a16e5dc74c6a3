# SPDX-License-Identifier: Apache-2.0
"""Request and response models (never ORM objects)."""
