"""The real-time streaming engine (installed as ``frieren_rt.streaming``; issue 4)."""
