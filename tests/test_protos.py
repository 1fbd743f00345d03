"""The generated *_pb2.py modules must match protos/*.proto."""

import subprocess
import sys

from tests import conftest


def test_generated_protos_are_up_to_date():
    result = subprocess.run(
        [sys.executable, str(conftest.REPO_ROOT / "scripts" / "generate_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_message_documents_next_id():
    for proto in (conftest.REPO_ROOT / "protos").glob("*.proto"):
        text = proto.read_text()
        assert text.count("message ") == text.count("// Next ID:"), proto.name
