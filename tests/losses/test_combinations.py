"""Every loss with every miner (or the check that refuses it), and the cross-batch memory."""

import pytest
import pytorch_metric_learning.losses as pml_losses
import pytorch_metric_learning.miners as pml_miners
import torch

from dml.distances import References
from dml.errors import DmlError
from dml.losses.arcface import ArcFaceLoss
from dml.losses.compat import check_compatible
from dml.losses.contrastive import ContrastiveLoss
from dml.losses.lifted_structure import LiftedStructureLoss
from dml.losses.lmnn import LMNNLoss
from dml.losses.margin import MarginLoss
from dml.losses.multi_similarity import MultiSimilarityLoss
from dml.losses.nca import NCALoss
from dml.losses.npair import NPairLoss
from dml.losses.ntxent import NTXentLoss
from dml.losses.proxy_anchor import ProxyAnchorLoss
from dml.losses.proxy_nca import ProxyNCALoss
from dml.losses.triplet import TripletLoss
from dml.miners.all_triplets import AllTripletsMiner
from dml.miners.batch_hard import BatchHardMiner
from dml.miners.distance_weighted import DistanceWeightedMiner
from dml.miners.easy import EasyMiner
from dml.miners.multi_similarity import MultiSimilarityMiner
from dml.miners.pair_margin import PairMarginMiner
from dml.miners.random_triplets import RandomTripletMiner
from dml.miners.semihard import SemiHardMiner
from dml.training.memory import CrossBatchMemory
from dml.tuples import Triplets, all_triplets
from tests.reference_losses import assert_same, make_batch

TUPLE_LOSSES = {
    "triplet": lambda: TripletLoss(0.5),
    "soft_triplet": lambda: TripletLoss(0.5, soft=True),
    "contrastive": lambda: ContrastiveLoss(0.0, 2.0),
    "contrastive_pml": lambda: ContrastiveLoss(0.0, 2.0, "pml"),
    "margin": lambda: MarginLoss(),
    "multi_similarity": lambda: MultiSimilarityLoss(),
    "lifted_structure": lambda: LiftedStructureLoss(),
    "ntxent": lambda: NTXentLoss(),
    "npair": lambda: NPairLoss(),
}
WHOLE_BATCH_LOSSES = {
    "nca": lambda: NCALoss(),
    "lmnn": lambda: LMNNLoss(),
    "proxy_nca": lambda: ProxyNCALoss(4, 6),
    "proxy_anchor": lambda: ProxyAnchorLoss(4, 6),
    "arcface": lambda: ArcFaceLoss(4, 6),
}
MINERS = {
    "all": AllTripletsMiner,
    "hard": BatchHardMiner,
    "semihard": lambda: SemiHardMiner(1.0),
    "easy": lambda: EasyMiner(0.5),
    "random": RandomTripletMiner,
    "distance_weighted": lambda: DistanceWeightedMiner(0.5, 1.9),
    "multi_similarity": lambda: MultiSimilarityMiner(0.5),
    "pair_margin": lambda: PairMarginMiner(1.0, 3.0),
}


@pytest.mark.parametrize("loss_name", sorted(TUPLE_LOSSES))
@pytest.mark.parametrize("miner_name", [None, *sorted(MINERS)])
def test_every_tuple_loss_trains_with_every_miner(loss_name: str, miner_name) -> None:
    torch.manual_seed(0)
    x, labels = make_batch("random", n=24)
    loss = TUPLE_LOSSES[loss_name]().double()
    miner = None if miner_name is None else MINERS[miner_name]()
    check_compatible(loss, miner, samples_per_class=2)
    out = loss.compute(x, labels, None if miner is None else miner(x, labels))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(x.grad).all()
    assert 0 <= out.num_active <= out.num_tuples


@pytest.mark.parametrize("loss_name", sorted(WHOLE_BATCH_LOSSES))
def test_whole_batch_losses_refuse_a_miner_at_start(loss_name: str) -> None:
    loss = WHOLE_BATCH_LOSSES[loss_name]()
    check_compatible(loss, None)
    with pytest.raises(DmlError, match="takes no miner.*set miner=none") as info:
        check_compatible(loss, BatchHardMiner())
    assert "\n" not in str(info.value)


def test_losses_that_need_positives_refuse_one_sample_per_class() -> None:
    with pytest.raises(DmlError, match="data.samples_per_class=1"):
        check_compatible(TripletLoss(), None, samples_per_class=1)
    check_compatible(ProxyAnchorLoss(4, 6), None, samples_per_class=1)


def test_memory_needs_a_dml_loss_that_supports_it() -> None:
    memory = CrossBatchMemory(64)
    check_compatible(TripletLoss(), BatchHardMiner(), memory)
    for loss in (ProxyAnchorLoss(4, 6), NPairLoss(), pml_losses.TripletMarginLoss()):
        with pytest.raises(DmlError, match="cannot use a cross-batch memory"):
            check_compatible(loss, None, memory)
    with pytest.raises(DmlError, match="not a dml miner"):
        check_compatible(TripletLoss(), pml_miners.BatchHardMiner(), memory)


def test_pml_components_are_trusted_without_memory() -> None:
    check_compatible(pml_losses.TripletMarginLoss(), pml_miners.BatchHardMiner())
    check_compatible(TripletLoss(), pml_miners.MultiSimilarityMiner())


def test_memory_queue_keeps_the_latest_entries() -> None:
    memory = CrossBatchMemory(size=5)
    assert memory.references() is None and len(memory) == 0
    memory.enqueue(torch.arange(3.0).unsqueeze(1), torch.tensor([0, 1, 2]))
    memory.enqueue(torch.arange(3.0, 7.0).unsqueeze(1), torch.tensor([3, 4, 5, 6]))
    refs = memory.references()
    assert len(memory) == 5
    assert sorted(refs.labels.tolist()) == [2, 3, 4, 5, 6]
    assert torch.equal(refs.embeddings.squeeze(1), refs.labels.double().float())
    memory.enqueue(torch.arange(10.0, 18.0).unsqueeze(1), torch.arange(10, 18))
    assert sorted(memory.references().labels.tolist()) == [13, 14, 15, 16, 17]


def test_memory_stores_detached_copies_after_warmup() -> None:
    memory = CrossBatchMemory(size=8, warmup_steps=2)
    x = torch.randn(4, 3, requires_grad=True)
    for _ in range(2):
        memory.enqueue(x, torch.arange(4))
    assert memory.references() is None
    memory.enqueue(x * 2, torch.arange(4))
    refs = memory.references()
    assert not refs.embeddings.requires_grad and torch.equal(refs.embeddings, (x * 2).detach())
    memory.reset()
    assert memory.references() is None


@pytest.mark.parametrize("loss_name", sorted(set(TUPLE_LOSSES) - {"npair"}) + ["nca", "lmnn"])
def test_memory_equals_a_batch_with_memory_rows_as_non_anchors(loss_name: str) -> None:
    """With memory M, a triplet loss equals the same loss on batch+M restricted to batch anchors;
    every loss at least trains and lets no gradient into the memory."""
    x, labels = make_batch("random", n=12)
    mem_x, mem_labels = make_batch("random", seed=9, n=10)
    memory = References(mem_x.detach(), mem_labels)
    loss = {**TUPLE_LOSSES, "nca": NCALoss, "lmnn": LMNNLoss}[loss_name]().double()
    out = loss.compute(x, labels, memory=memory)
    without = loss.compute(x, labels)
    assert out.num_tuples > without.num_tuples
    out.loss.backward(retain_graph=True)
    assert torch.isfinite(x.grad).all()
    if loss_name == "triplet":
        both = torch.cat([x, mem_x.detach()])
        both_labels = torch.cat([labels, mem_labels])
        listed = all_triplets(both_labels)
        keep = listed.anchor < len(x)
        expected = loss.compute(both, both_labels, Triplets(*(t[keep] for t in listed)))
        assert_same(out.loss, expected.loss, x)


@pytest.mark.parametrize("miner_name", sorted(MINERS))
def test_every_miner_mines_the_memory(miner_name: str) -> None:
    x, labels = make_batch("random", n=12)
    mem_x, mem_labels = make_batch("random", seed=9, n=10)
    memory = References(mem_x.detach(), mem_labels)
    mined = MINERS[miner_name]()(x, labels, memory)
    out = TripletLoss(0.5).compute(x, labels, mined, memory)
    out.loss.backward()
    assert torch.isfinite(x.grad).all()
    refs = torch.cat([labels, mem_labels])
    a, p = (mined[0], mined[1])
    assert (a < len(x)).all() and (refs[a] == refs[p]).all()
