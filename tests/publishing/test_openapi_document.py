"""The publishing and catalog routes are documented: operation ids, summaries, tags, examples."""

from __future__ import annotations

from tests.helpers import Api

PREFIXES = ("/v1/apis", "/v1/plans", "/v1/catalog", "/v1/admin/apis")


async def test_every_publishing_and_catalog_operation_is_documented_with_examples(api: Api) -> None:
    doc = (await api.client.get("/schema/openapi.json")).json()
    operations = [(path, method, op) for path, item in doc["paths"].items() if path.startswith(PREFIXES)
                  for method, op in item.items() if isinstance(op, dict) and "responses" in op]
    assert len(operations) >= 25
    ids = [op["operationId"] for _, _, op in operations]
    assert len(ids) == len(set(ids))
    for path, method, op in operations:
        assert op.get("summary") and op.get("tags"), (path, method)
    schemas = doc["components"]["schemas"]
    plan = schemas["PlanIn"]["properties"]
    assert plan["monthly_fee"]["examples"] == [4900]
    assert {e["model"] for e in plan["unit_pricing"]["oneOf"][0].get("examples", [])
            or plan["unit_pricing"].get("examples", [])} == {"per_unit", "graduated", "volume", "package"}
    assert schemas["ApiIn"]["properties"]["slug"]["examples"] == ["acme-weather"]
    catalog = doc["paths"]["/v1/catalog/apis"]["get"]
    assert catalog.get("security") == [{}]  # public


async def test_the_openapi_import_documents_its_raw_document_body(api: Api) -> None:
    doc = (await api.client.get("/schema/openapi.json")).json()
    body = doc["paths"]["/v1/apis/{api_id}/import-openapi"]["post"]["requestBody"]
    assert set(body["content"]) == {"application/json", "application/yaml"}
    assert body["content"]["application/json"]["examples"]["weather"]["value"]["openapi"].startswith("3.")
