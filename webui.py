"""Operator console (Gradio): not built yet. Until it is, train and evaluate models with train.py."""

if __name__ == "__main__":
    print("The operator console is not built yet (see the console issue).")
    print("Train a model with:  python train.py --help")
