"""The reliability suite reuses the integration fixtures (both local venues + the rig)."""

from tests.integration.conftest import auth, rig, test_key, venues

__all__ = ["auth", "rig", "test_key", "venues"]
