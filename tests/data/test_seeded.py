import numpy as np

from recplat.data import seeded


def test_hash_is_stable_across_calls_and_processes():
    # Fixed values: pandas' fixed-key SipHash must not change under us (it would reshuffle datasets).
    h = seeded.hash_strings(["a", "b"])
    assert h.tolist() == [13950350942979735504, 12688059582079114975]
    assert seeded.hash_strings(np.array(["a", None], dtype=object))[1] == seeded.hash_strings([""])[0]


def test_uniform_is_a_counter_stream():
    keys = seeded.row_keys(7, "stage", np.arange(5))
    whole = seeded.uniform(keys, 10)
    pieces = np.hstack([seeded.uniform(keys, 4), seeded.uniform(keys, 6, start=5)])
    assert np.array_equal(whole, pieces)
    assert whole.shape == (5, 10) and (whole >= 0).all() and (whole < 1).all()
    # different seeds and stages give different streams
    assert not np.array_equal(whole, seeded.uniform(seeded.row_keys(8, "stage", np.arange(5)), 10))
    assert not np.array_equal(whole, seeded.uniform(seeded.row_keys(7, "other", np.arange(5)), 10))


def test_uniform_is_uniform():
    u = seeded.uniform(seeded.row_keys(1, "u", np.arange(20000)), 5).ravel()
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert abs(u.mean() - 0.5) < 0.01
    assert counts.min() > 0.9 * len(u) / 10


def test_bucket_of_is_per_user():
    users = np.array(["u1", "u2", "u1", "u3"], dtype=object)
    b = seeded.bucket_of(users, 4)
    assert b[0] == b[2] and b.dtype == np.int32 and ((0 <= b) & (b < 4)).all()
