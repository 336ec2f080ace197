"""Operator console (Gradio). Not built yet: see the console issue; until then use train.py and the tests."""

import sys

if __name__ == "__main__":
    print("The operator console is not built yet. Train a model with: python train.py --help", file=sys.stderr)
    sys.exit(1)
