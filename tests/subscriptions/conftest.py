from tests.gateway.factories import upstream  # noqa: F401  (fixture)
