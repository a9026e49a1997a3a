from tests.core.conftest import kmap, root  # noqa: F401  (shared fixtures)
