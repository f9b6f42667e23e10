import pytest
import pytorch_metric_learning.miners as pml_miners
import torch

from dml.distances import Distance, References
from dml.miners.all_triplets import AllTripletsMiner
from dml.miners.base import Miner
from dml.miners.batch_hard import BatchHardMiner
from dml.miners.distance_weighted import DistanceWeightedMiner
from dml.miners.easy import EasyMiner
from dml.miners.random_triplets import RandomTripletMiner
from dml.miners.semihard import SemiHardMiner
from dml.tuples import Triplets, TripletSelection
from tests.reference_losses import CASES, DISTANCES, make_batch, pml_distance


def assert_valid_triplets(mined, labels: torch.Tensor, ref_labels: torch.Tensor | None = None):
    refs = labels if ref_labels is None else torch.cat([labels, ref_labels])
    a, p, n = mined
    assert len(a) == len(p) == len(n)
    assert (a < len(labels)).all(), "anchors must be batch rows"
    assert (refs[a] == refs[p]).all(), "anchor and positive share a label"
    assert (refs[a] != refs[n]).all(), "anchor and negative differ"
    assert (a != p).all(), "a sample is not its own positive"


MINERS = {
    "all": lambda d: AllTripletsMiner(d),
    "hard": lambda d: BatchHardMiner(d),
    "semihard": lambda d: SemiHardMiner(0.3, d),
    "random": lambda d: RandomTripletMiner(3, d),
    "easy": lambda d: EasyMiner(0.3, d),
    "distance_weighted": lambda d: DistanceWeightedMiner(0.5, 1.4),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", sorted(MINERS))
@pytest.mark.parametrize("distance", sorted(DISTANCES))
def test_mined_triplets_are_valid(case: str, name: str, distance: str) -> None:
    x, labels = make_batch(case)
    mined = MINERS[name](DISTANCES[distance]())(x, labels)
    assert_valid_triplets(mined, labels)
    if case in ("one_class", "no_positive"):
        assert len(mined[0]) == 0


@pytest.mark.parametrize("name", sorted(MINERS))
def test_mined_triplets_with_memory_are_valid(name: str) -> None:
    x, labels = make_batch("random")
    mem_x, mem_labels = make_batch("singletons", seed=8, n=20)
    mined = MINERS[name](DISTANCES["euclidean"]())(x, labels, References(mem_x, mem_labels))
    assert_valid_triplets(mined, labels, mem_labels)
    assert (mined[1] >= len(x)).any() and (mined[2] >= len(x)).any()


def warmed_up(distance: Distance, epoch: int) -> BatchHardMiner:
    """hard.yaml's miner (two warm-up epochs) at a given training epoch."""
    miner = BatchHardMiner(distance, warmup_epochs=2, warmup_margin=0.2)
    miner.set_epoch(epoch)
    return miner


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("distance", sorted(DISTANCES))
@pytest.mark.parametrize("after_warmup", [False, True])
def test_batch_hard_equals_pml(case: str, distance: str, after_warmup: bool) -> None:
    """Equal indices, except that between exact duplicates (a tie) either may be picked.

    Both libraries compute the matrix with a matmul, whose rounding differs by column, so
    which duplicate wins a tie is floating-point noise in PML as in dml; the distances, and
    hence the loss, are the same. Once its warm-up is over, a warming miner is the same.
    """
    x, labels = make_batch(case)
    if after_warmup:
        ours = warmed_up(DISTANCES[distance](), epoch=2)(x, labels)
    else:
        ours = BatchHardMiner(DISTANCES[distance]())(x, labels)
    theirs = pml_miners.BatchHardMiner(distance=pml_distance(distance))(x, labels)
    assert torch.equal(ours.anchor, theirs[0])
    a = ours.anchor
    for mine, pml in zip(ours[1:], theirs[1:], strict=True):
        differs = mine != pml
        assert torch.equal(x[mine[differs]], x[pml[differs]]), "only duplicates may differ"
        if case != "duplicates" and case != "collapsed_class":
            assert not differs.any()
        assert (labels[mine] == labels[pml]).all() and len(a) == len(mine)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("distance", sorted(DISTANCES))
def test_semihard_equals_pml(case: str, distance: str) -> None:
    x, labels = make_batch(case)
    margin = 0.2 if distance == "cosine" else 0.8
    ours = SemiHardMiner(margin, DISTANCES[distance]())(x, labels)
    assert isinstance(ours, TripletSelection)
    theirs = pml_miners.TripletMarginMiner(margin, "semihard", distance=pml_distance(distance))(
        x, labels
    )
    for mine, pml in zip(ours, theirs, strict=True):
        assert torch.equal(mine, pml)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("distance", sorted(DISTANCES))
@pytest.mark.parametrize("epoch", [0, 1])
def test_batch_hard_warmup_equals_pml_semihard(case: str, distance: str, epoch: int) -> None:
    x, labels = make_batch(case)
    ours = warmed_up(DISTANCES[distance](), epoch)(x, labels)
    assert isinstance(ours, TripletSelection)
    theirs = pml_miners.TripletMarginMiner(0.2, "semihard", distance=pml_distance(distance))(
        x, labels
    )
    for mine, pml in zip(ours, theirs, strict=True):
        assert torch.equal(mine, pml)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_in_groups_equals_pml_on_each_group(seed: int) -> None:
    """samples_per_class=k: PML's BatchHardMiner run on each group alone, where group g
    holds the g-th k samples of every class in batch order."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 5, (40,), generator=g)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64)
    ours = BatchHardMiner(samples_per_class=3)(x, labels)
    seen = torch.zeros(5, dtype=torch.long)
    group = torch.empty(40, dtype=torch.long)
    for i, label in enumerate(labels.tolist()):  # the slow, obvious grouping
        group[i] = seen[label] // 3
        seen[label] += 1
    expected = []
    for g_id in group.unique().tolist():
        rows = (group == g_id).nonzero(as_tuple=True)[0]
        miner = pml_miners.BatchHardMiner(distance=pml_distance("euclidean"))
        a, p, n = miner(x[rows], labels[rows])
        expected += list(zip(rows[a].tolist(), rows[p].tolist(), rows[n].tolist(), strict=True))
    assert sorted(zip(*(t.tolist() for t in ours), strict=True)) == sorted(expected)
    assert len(expected) > 0


def test_semihard_rule_holds_on_every_triplet() -> None:
    x, labels = make_batch("random")
    a, p, n = SemiHardMiner(0.5)(x, labels)
    d = torch.cdist(x, x).detach()
    assert len(a) > 0
    assert (d[a, p] < d[a, n]).all() and (d[a, n] <= d[a, p] + 0.5 + 1e-12).all()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("distance", sorted(DISTANCES))
def test_easy_equals_pml(case: str, distance: str) -> None:
    x, labels = make_batch(case)
    margin = 0.2 if distance == "cosine" else 0.8
    ours = EasyMiner(margin, DISTANCES[distance]())(x, labels)
    theirs = pml_miners.TripletMarginMiner(margin, "easy", distance=pml_distance(distance))(
        x, labels
    )
    for mine, pml in zip(ours, theirs, strict=True):
        assert torch.equal(mine, pml)


@pytest.mark.parametrize("case", CASES)
def test_all_triplets_equals_pml_listing(case: str) -> None:
    x, labels = make_batch(case)
    ours = AllTripletsMiner()(x, labels)
    from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

    for mine, pml in zip(ours, lmu.get_all_triplets_indices(labels), strict=True):
        assert torch.equal(mine, pml)


def test_batch_hard_picks_farthest_positive_and_closest_negative() -> None:
    x = torch.tensor([[0.0], [1.0], [3.0], [4.0], [10.0]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    a, p, n = BatchHardMiner()(x, labels)
    assert a.tolist() == [0, 1, 2, 3, 4]
    assert p.tolist() == [2, 2, 0, 4, 3]
    assert n.tolist() == [3, 3, 3, 2, 2]


def test_random_miner_budget_and_spread() -> None:
    torch.manual_seed(0)
    labels = torch.arange(32) // 4
    x = torch.randn(32, 3)
    mined = RandomTripletMiner(50)(x, labels)
    assert isinstance(mined, Triplets)
    assert len(mined.anchor) == 32 * 50
    assert_valid_triplets(mined, labels)
    # every positive of anchor 0 and many of its negatives get drawn
    assert set(mined.positive[mined.anchor == 0].tolist()) == {1, 2, 3}
    assert len(set(mined.negative[mined.anchor == 0].tolist())) > 15


def test_random_miner_rejects_empty_budget() -> None:
    with pytest.raises(ValueError, match="triplets_per_anchor"):
        RandomTripletMiner(0)


def test_mining_never_records_gradients() -> None:
    x, labels = make_batch("random")

    class Spy(Miner):
        def mine(self, embeddings, labels, memory=None):
            assert not embeddings.requires_grad and not torch.is_grad_enabled()
            return Triplets(labels[:0], labels[:0], labels[:0])

    Spy()(x, labels)
