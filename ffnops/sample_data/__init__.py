"""Sample data shipped inside the package (see README.md in this folder for origin and licence)."""

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent


def sample_path(name: str) -> str:
    """Absolute path of a bundled sample file; raises FileNotFoundError naming what exists."""
    path = SAMPLE_DIR / name
    if not path.is_file():
        present = sorted(p.name for p in SAMPLE_DIR.iterdir() if p.suffix != ".py")
        raise FileNotFoundError(f"no bundled sample {name!r}; samples: {', '.join(present)}")
    return str(path)


# Google's released FIB-25 checkpoint (Apache-2.0), bundled; see google_fib25/README.md.
GOOGLE_FIB25_CHECKPOINT = SAMPLE_DIR / "google_fib25" / "model.ckpt-27465036"
GOOGLE_FIB25_REQUEST = SAMPLE_DIR / "google_fib25" / "inference_training_sample2.pbtxt"
# Google's own segmentation of training_sample2 [0, 100)^3 with them; see google_fib25/README.md.
GOOGLE_FIB25_CROP100 = SAMPLE_DIR / "google_fib25" / "reference_crop100"
