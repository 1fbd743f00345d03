"""Regenerates deeplab_video/protos/*_pb2.py from protos/*.proto.

Usage: python scripts/generate_protos.py [--check]

The .proto files in protos/ are the source of truth. They import each other as
"deeplab_video/protos/<name>.proto", which protoc maps onto protos/ with a virtual
include path, so the generated modules import each other as
`from deeplab_video.protos import <name>_pb2`. With --check nothing is written and the
exit status is 1 when a generated file is missing or stale.
"""

import argparse
import pathlib
import sys
import tempfile

from grpc_tools import protoc

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PROTO_DIR = REPO_ROOT / "protos"
OUTPUT_PACKAGE = pathlib.Path("deeplab_video") / "protos"


def generate(output_root: pathlib.Path) -> list[pathlib.Path]:
    """Runs protoc on every protos/*.proto, writing under output_root.

    Returns:
        The generated files, relative to output_root.
    """
    proto_files = sorted(PROTO_DIR.glob("*.proto"))
    include_root = pathlib.Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{OUTPUT_PACKAGE.as_posix()}={PROTO_DIR}",
        f"-I{include_root}",
        f"--python_out={output_root}",
    ] + [(OUTPUT_PACKAGE / p.name).as_posix() for p in proto_files]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + ", ".join(p.name for p in proto_files))
    return [OUTPUT_PACKAGE / (p.stem + "_pb2.py") for p in proto_files]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args()
    if not args.check:
        for path in generate(REPO_ROOT):
            print(f"wrote {path}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        stale = []
        for path in generate(pathlib.Path(tmp)):
            committed = REPO_ROOT / path
            fresh = (pathlib.Path(tmp) / path).read_bytes()
            if not committed.exists() or committed.read_bytes() != fresh:
                stale.append(str(path))
    if stale:
        print("stale generated protos (run scripts/generate_protos.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
