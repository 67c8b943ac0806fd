from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import Api, unique


async def test_create_operator_command_creates_then_promotes(api: Api) -> None:
    email = f"{unique('op')}@example.com"
    command = [sys.executable, "-m", "marketplace", "create-operator", "--email", email, "--password", "operator-pass"]
    first = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), check=False)
    assert first.returncode == 0, first.stderr
    assert "Created operator" in first.stdout
    second = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), check=False)
    assert "Promoted operator" in second.stdout
    login = await api.client.post("/v1/login", json={"email": email, "password": "operator-pass"})
    me = await api.client.get("/v1/me", headers={"Authorization": f"Bearer {login.json()['token']}"})
    assert me.json()["is_operator"] is True
