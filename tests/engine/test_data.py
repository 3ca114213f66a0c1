import torch

from mvae_cli.data.format import read_dataset
from mvae_cli.engine.data import SplitData
from tests.helpers import make_dataset


def test_streaming_from_hdf5_gives_the_same_batches_as_the_device_copy(tmp_path):
    path = make_dataset(tmp_path / "tiny.h5")
    with read_dataset(path) as ds:
        mask = torch.rand(200, 2, generator=torch.Generator().manual_seed(0)).numpy() < 0.5
        whole = SplitData(ds, "train", torch.device("cpu"), mask, budget_bytes=None)
        streamed = SplitData(ds, "train", torch.device("cpu"), mask, budget_bytes=1)  # nothing fits: read per batch
        assert whole.on_device and not streamed.on_device
        index = torch.tensor([17, 3, 150, 42])
        a, b = whole.batch(index), streamed.batch(index)
        order = index.argsort()  # the stream reads rows in increasing order
        for key in ("image", "label", "mask"):
            assert torch.equal(a[key][order], b[key]), key
        assert a["image"].dtype == torch.float32 and float(a["image"].max()) <= 1.0
        assert a["label"].dtype == torch.long


def test_splits_read_within_shared_splits_are_read_once(tmp_path):
    """The runs of a stack open the same file: within ``shared_splits`` its split is read once and its
    arrays shared; outside it, and for a file written anew, read again."""
    import os

    from mvae_cli.engine.data import shared_splits

    path = make_dataset(tmp_path / "tiny.h5")
    cpu = torch.device("cpu")

    def split():
        with read_dataset(path) as ds:
            return SplitData(ds, "train", cpu)

    with shared_splits():
        a, b = split(), split()
        assert a._tensors["image"].data_ptr() == b._tensors["image"].data_ptr()
        stat = os.stat(path)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file changed: read anew
        c = split()
        assert c._tensors["image"].data_ptr() != a._tensors["image"].data_ptr()
        assert torch.equal(c._tensors["image"], a._tensors["image"])
    assert split()._tensors["image"].data_ptr() != a._tensors["image"].data_ptr()
