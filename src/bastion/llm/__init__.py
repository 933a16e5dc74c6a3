# SPDX-License-Identifier: Apache-2.0
"""Model providers behind one protocol: the offline development model and any OpenAI-compatible API."""
