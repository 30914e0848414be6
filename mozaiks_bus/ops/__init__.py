"""Operator tools: the embedded redis-server launcher, doctor, up and demo."""

__all__: list[str] = []
