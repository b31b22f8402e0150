"""What the tests share: the session stack's isolated databases, model runs, media factories, a fixture model.

Test modules import helpers from here; ``tests/conftest.py`` only declares the pytest fixtures built on them."""
