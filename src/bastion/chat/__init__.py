# SPDX-License-Identifier: Apache-2.0
"""Chat sessions and messages: persisted before the model is called, encrypted at rest."""
