import torch
from torch import nn

from search.batchnorm import recalibrate_batchnorm


def _batches(x: torch.Tensor, size: int):
    return [(x[i:i + size], torch.zeros(len(x[i:i + size]))) for i in range(0, len(x), size)]


def test_recalibration_gives_the_plain_average_of_batch_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[[[1.0]]], [[[2.0]]]]))
    net[1].running_mean.fill_(5.0)  # stale statistics from another architecture
    net.eval()
    x = torch.randn(12, 1, 3, 3) * 3 + 1
    used = recalibrate_batchnorm(net, _batches(x, 4), images=8)
    assert used == 8
    # Two batches of 4: the running mean is the mean of the two batch means (channel 1 doubles channel 0), the
    # running variance the mean of the two unbiased batch variances.
    means = torch.stack([x[:4].mean(), x[4:8].mean()])
    variances = torch.stack([x[:4].var(), x[4:8].var()])
    assert torch.allclose(net[1].running_mean, torch.stack([means.mean(), 2 * means.mean()]), atol=1e-5)
    assert torch.allclose(net[1].running_var, torch.stack([variances.mean(), 4 * variances.mean()]), atol=1e-4)
    assert net[1].momentum == 0.1 and not net.training


def test_recalibrated_eval_output_matches_train_mode_on_the_same_batch():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    x = torch.randn(32, 3, 8, 8) * 4 - 2
    net.train()
    with torch.no_grad():
        batch_stats = net(x)
    recalibrate_batchnorm(net, [(x, None)], images=32)
    net.eval()
    with torch.no_grad():
        eval_stats = net(x)
    # eval mode divides by the unbiased variance, train mode by the biased one: n/(n-1) apart only.
    assert torch.allclose(eval_stats, batch_stats, atol=0.05)
    assert net[1].num_batches_tracked == 1


def test_a_network_without_batchnorm_is_left_alone():
    net = nn.Linear(2, 2).eval()
    assert recalibrate_batchnorm(net, [(torch.ones(1, 2), None)], images=10) == 0
    assert not net.training
