"""Bad input never gives a 500: values PostgreSQL cannot store are the client's problem (422)."""

from __future__ import annotations

from tests.helpers import Api, assert_problem


async def test_nul_byte_in_a_json_string_is_a_422_not_a_500(api: Api) -> None:
    user = await api.signup()
    response = await api.client.post("/v1/partners", json={"name": "Acme\u0000"}, headers=user.headers)
    assert_problem(response, 422, contains="NUL")


async def test_nul_byte_in_a_path_id_is_a_client_error_not_a_500(api: Api) -> None:
    user = await api.signup()
    for path in ("/v1/partners/%00", "/v1/apis/prt%00x", "/v1/subscriptions/%00/usage", "/v1/catalog/apis/%00"):
        response = await api.client.get(path, headers=user.headers)
        assert response.status_code in (404, 422), (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_nul_byte_in_a_query_parameter_is_a_client_error_not_a_500(api: Api) -> None:
    user = await api.signup()
    response = await api.client.get("/v1/apis?partner_id=%00", headers=user.headers)
    assert response.status_code in (404, 422), response.text
