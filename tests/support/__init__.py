"""Helpers shared by the test suite (and by ``bench/``); none of them is a pytest fixture.

- :mod:`tests.support.broker`: a private Mosquitto broker on a free loopback port
  (``Mosquitto``, ``free_port``).
- :mod:`tests.support.daemon_proc`: ``harbord run`` as a real subprocess with a temp config
  (``DaemonProc``) and a paho MQTT ``Subscriber``.
- :mod:`tests.support.waits`: ``wait_until`` / ``async_wait_until``, to wait on a condition
  instead of sleeping a fixed time.
- :mod:`tests.support.media`: real media files made with ffmpeg (mp3, flac, mp4, mkv, EXIF
  jpg), seeded so that bytes are reproducible or distinct at will.
- :mod:`tests.support.contexts`: a handler ``Context`` on a real SQLite catalog in a temp
  folder (``catalog_context``).
- :mod:`tests.support.pool_funcs`: top-level functions the CPU-pool tests run in worker
  processes (referenced by module path, e.g. ``"tests.support.pool_funcs:warm"``).
- :mod:`tests.support.fixtures`: the recorded API responses and release names shared with
  other projects (``FIXTURES``, ``recorded_objects``).
- :mod:`tests.support.leaks`: what a test left running in this process (threads, inotify
  instances, child processes), read from ``/proc``; used by the leak guard in conftest.

The pytest fixtures and hooks themselves (the session broker, ``ctx``, ``inbox``, the leak
guards) stay in ``tests/conftest.py``.
"""
