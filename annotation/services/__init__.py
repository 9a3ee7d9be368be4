"""Writes. Views, admin actions, tasks and commands call these; never raw ``.save()`` chains."""
