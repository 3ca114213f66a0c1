"""The one training engine, used by ``mvae train`` and ``mvae sweep`` alike."""
