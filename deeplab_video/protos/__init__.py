"""Generated protocol buffer modules (run scripts/generate_protos.py; do not edit)."""
