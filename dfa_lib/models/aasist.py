"""The field's raw-waveform reference systems: RawNet2, AASIST and AASIST-L.

* :class:`RawNet2`: Tak et al., "End-to-end anti-spoofing with RawNet2" (ICASSP 2021), the
  ASVspoof 2021 baseline. Fixed mel-spaced sinc band-pass filters (20 of 1,025 taps), max-pool,
  BatchNorm/SELU, six 1-D residual blocks with filter-wise feature map scaling (FMS), a
  three-layer GRU of 1,024 units, a fully connected layer and the 2-way output.
* :class:`AASIST`: Jung et al., "AASIST: audio anti-spoofing using integrated
  spectro-temporal graph attention networks" (ICASSP 2022). A sinc front end (70 filters of
  129 taps) feeds :class:`AASISTBackend`: a 2-D residual encoder, graph attention over
  spectral and over temporal nodes, two branches of heterogeneous stacking graph attention
  with a stack node, combined by an element-wise maximum, and a readout of node maxima, means
  and the stack node. About 297 k parameters.
* :class:`AASISTLight`: the paper's AASIST-L, the same network with fewer channels
  (85,306 parameters).

Every model maps 16 kHz waveforms ``(batch, samples)`` to logits ``(batch, 2)`` ordered
``[real, fake]``, like :mod:`dfa_lib.models.networks`. The papers train on fixed 64,600-sample
crops (about 4 s); here ``input_samples`` is ``None`` by default, so any length works and the
training crop (``clip_seconds``) sets the window, or a number that fixes the input length.

:class:`AASISTBackend` takes any 2-D map ``(batch, 1, features, frames)``: the sinc filter
outputs here, or projected frames of a pretrained speech encoder (Tak et al., Odyssey 2022:
a linear layer to 128 features, then the map ``(batch, 1, 128, frames)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from dfa_lib.models.networks import ModelConfigError, _check_waves

SAMPLE_RATE = 16000
# Sinc filters longer than this are applied segment by segment, _SEGMENT output samples each.
_SEGMENT_KERNEL = 256
_SEGMENT = 4096


def _mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


class SincFilterbank(nn.Module):
    """Fixed band-pass sinc filters with mel-spaced edges from 0 Hz to Nyquist.

    Origin: SincNet (Ravanelli and Bengio, 2018), used with fixed mel-scale bands by RawNet2
    and AASIST. Filter ``i`` passes the band between edges ``i`` and ``i + 1`` of
    ``n_filters + 1`` edges equally spaced on the mel scale: the difference of two ideal
    low-pass sinc responses, tapered by a Hamming window. An even ``kernel_size`` gets one
    more tap so the filters are symmetric. The filters are a buffer, not parameters, and are
    rebuilt from the settings (not stored with the weights). Zero padding of half a kernel on
    each side keeps the output as long as the input.
    """

    def __init__(self, n_filters: int, kernel_size: int, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            kernel_size += 1
        self.kernel_size = kernel_size
        nyquist = torch.tensor(sample_rate / 2.0, dtype=torch.float64)
        edges = _hz(torch.linspace(0.0, float(_mel(nyquist)), n_filters + 1, dtype=torch.float64))
        taps = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
        low, high = edges[:-1, None] / sample_rate, edges[1:, None] / sample_rate
        ideal = 2 * high * torch.sinc(2 * high * taps) - 2 * low * torch.sinc(2 * low * taps)
        window = torch.hamming_window(kernel_size, periodic=False, dtype=torch.float64)
        filters = (ideal * window).float().unsqueeze(1)  # (n_filters, 1, kernel)
        self.register_buffer("filters", filters, persistent=False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Filter waveforms ``(batch, samples)`` into ``(batch, n_filters, samples)``."""
        k = self.kernel_size
        if k <= _SEGMENT_KERNEL:
            return F.conv1d(waves.unsqueeze(1), self.filters, padding=k // 2)
        # Long filters (RawNet2's 1,025 taps) go through the convolution in overlapping
        # segments stacked along the batch: the same products, but torch's CPU convolution
        # on one or two long signals is 200x slower (4 s instead of 20 ms for one 4-s clip).
        batch, samples = waves.shape
        n = -(-samples // _SEGMENT)
        padded = F.pad(waves, (k // 2, k // 2 + n * _SEGMENT - samples))
        pieces = padded.unfold(1, _SEGMENT + k - 1, _SEGMENT).reshape(batch * n, 1, -1)
        out = F.conv1d(pieces, self.filters).reshape(batch, n, -1, _SEGMENT)
        return out.permute(0, 2, 1, 3).reshape(batch, -1, n * _SEGMENT)[..., :samples]


def _check_ints(name: str, values: Sequence, count: int, low: int, high: int) -> tuple[int, ...]:
    ok = isinstance(values, list | tuple) and len(values) == count
    if ok:
        ok = all(
            isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in values
        )
    if not ok:
        raise ModelConfigError(
            f"{name} must be a list of {count} integers in [{low}, {high}], got {values!r}"
        )
    return tuple(values)


def _check_floats(
    name: str, values: Sequence, count: int, low: float, high: float
) -> tuple[float, ...]:
    ok = isinstance(values, list | tuple) and len(values) == count
    if ok:
        ok = all(
            isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            and low < v <= high
            for v in values
        )
    if not ok:
        raise ModelConfigError(
            f"{name} must be a list of {count} numbers in ({low:g}, {high:g}], got {values!r}"
        )
    return tuple(float(v) for v in values)


# -- RawNet2 --------------------------------------------------------------------------------


class FeatureMapScaling(nn.Module):
    """Filter-wise feature map scaling (FMS) of RawNet2: ``x * s + s``, ``s`` per channel.

    ``s`` is a sigmoid of a linear map of the channel means over time, so each filter's
    output is scaled and shifted by how active that filter is over the whole excerpt.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale ``(batch, channels, time)`` channel by channel."""
        s = torch.sigmoid(self.fc(x.mean(dim=-1))).unsqueeze(-1)
        return x * s + s


class _RawResidualBlock(nn.Module):
    """RawNet2's 1-D residual block: (BN, LeakyReLU) conv3, BN, LeakyReLU, conv3; pool; FMS."""

    def __init__(self, c_in: int, c_out: int, first: bool) -> None:
        super().__init__()
        # The first block follows the front end's own BatchNorm and SELU.
        self.pre: nn.Module = (
            nn.Identity() if first else nn.Sequential(nn.BatchNorm1d(c_in), nn.LeakyReLU(0.3))
        )
        self.body = nn.Sequential(
            nn.Conv1d(c_in, c_out, 3, padding=1),
            nn.BatchNorm1d(c_out),
            nn.LeakyReLU(0.3),
            nn.Conv1d(c_out, c_out, 3, padding=1),
        )
        self.shortcut: nn.Module = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.pool = nn.MaxPool1d(3, ceil_mode=True)  # ceil: a short input keeps one frame
        self.fms = FeatureMapScaling(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, c_in, time)`` to ``(batch, c_out, ceil(time / 3))``."""
        return self.fms(self.pool(self.body(self.pre(x)) + self.shortcut(x)))


class RawNet2(nn.Module):
    """RawNet2 for spoofing detection on raw waveforms, any length by default.

    Origin: Tak et al., "End-to-end anti-spoofing with RawNet2" (ICASSP 2021), a baseline of
    ASVspoof 2021, after the RawNet2 speaker embedding of Jung et al. (2020). Defaults are the published configuration: 20 fixed mel-spaced sinc filters of 1,024 taps
    (1,025 here, made odd), absolute value, max-pool 3, BatchNorm and SELU; two residual
    blocks of 20 channels and four of 128 (each ending in max-pool 3 and FMS); BatchNorm,
    SELU, a 3-layer GRU of 1,024 units whose last output goes through a 1,024-unit linear
    layer to the 2 logits. About 17.6 M parameters, 16.1 M of them in the GRU.
    """

    frontend_name = "waveform"

    def __init__(
        self,
        input_samples: int | None = None,
        sinc_filters: int = 20,
        sinc_kernel: int = 1024,
        channels: Sequence[int] = (20, 128),
        blocks: Sequence[int] = (2, 4),
        gru_hidden: int = 1024,
        gru_layers: int = 3,
        fc_hidden: int = 1024,
    ) -> None:
        super().__init__()
        self.input_samples = input_samples
        c1, c2 = _check_ints("channels", channels, 2, 1, 1024)
        n1, n2 = _check_ints("blocks", blocks, 2, 1, 16)
        self.sinc = SincFilterbank(sinc_filters, sinc_kernel)
        self.front = nn.Sequential(nn.MaxPool1d(3), nn.BatchNorm1d(sinc_filters), nn.SELU())
        layout = [(sinc_filters, c1)] + [(c1, c1)] * (n1 - 1) + [(c1, c2)] + [(c2, c2)] * (n2 - 1)
        self.blocks = nn.Sequential(
            *(_RawResidualBlock(a, b, first=i == 0) for i, (a, b) in enumerate(layout))
        )
        self.pre_gru = nn.Sequential(nn.BatchNorm1d(c2), nn.SELU())
        self.gru = nn.GRU(c2, gru_hidden, num_layers=gru_layers, batch_first=True)
        self.fc = nn.Linear(gru_hidden, fc_hidden)
        self.out = nn.Linear(fc_hidden, 2)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Map waveforms ``(batch, samples)`` to logits ``(batch, 2)`` [real, fake]."""
        _check_waves(waves, "rawnet2", self.input_samples)
        x = self.front(self.sinc(waves).abs())
        x = self.pre_gru(self.blocks(x))
        frames, _ = self.gru(x.transpose(1, 2))
        return self.out(self.fc(frames[:, -1]))


# -- AASIST ---------------------------------------------------------------------------------


def _attention_vector(dim: int) -> nn.Parameter:
    weight = torch.empty(dim, 1)
    nn.init.xavier_normal_(weight)
    return nn.Parameter(weight)


def _batch_norm_nodes(bn: nn.BatchNorm1d, h: torch.Tensor) -> torch.Tensor:
    """BatchNorm over the feature dimension of node features ``(batch, nodes, dim)``."""
    return bn(h.transpose(1, 2)).transpose(1, 2)


class GraphAttention(nn.Module):
    """A graph attention layer over a fully connected graph of nodes (AASIST's GAT).

    The attention between nodes ``i`` and ``j`` is ``w . tanh(W (h_i * h_j))`` divided by
    ``temperature``, softmax-normalised over ``j``. Each node's output is a projection of its
    attention-weighted neighbourhood plus a projection of itself, then BatchNorm and SELU.
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float, dropout: float = 0.2):
        super().__init__()
        self.temperature = temperature
        self.drop = nn.Dropout(dropout)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_vector = _attention_vector(out_dim)
        self.with_att = nn.Linear(in_dim, out_dim)
        self.without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Map node features ``(batch, nodes, in_dim)`` to ``(batch, nodes, out_dim)``."""
        h = self.drop(h)
        pairs = h.unsqueeze(2) * h.unsqueeze(1)  # (batch, nodes, nodes, in_dim)
        scores = torch.tanh(self.att_proj(pairs)) @ self.att_vector
        attention = torch.softmax(scores.squeeze(-1) / self.temperature, dim=-1)
        out = self.with_att(attention @ h) + self.without_att(h)
        return F.selu(_batch_norm_nodes(self.bn, out))


class HeterogeneousGraphAttention(nn.Module):
    """Heterogeneous stacking graph attention (AASIST's HS-GAL) of two node types and a stack.

    The two node sets (temporal and spectral) are projected each by its own linear map into
    one graph. Pair attention uses one projection ``tanh(W (h_i * h_j))`` but a separate
    attention vector for type-1 pairs, type-2 pairs and mixed pairs. The stack node attends
    to every node (its own projection and vector) and is updated from that summary and
    itself; it gathers what both types say without joining their attention.
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float, dropout: float = 0.2):
        super().__init__()
        self.temperature = temperature
        self.drop = nn.Dropout(dropout)
        self.type_proj = nn.ModuleList([nn.Linear(in_dim, in_dim), nn.Linear(in_dim, in_dim)])
        self.att_proj = nn.Linear(in_dim, out_dim)
        # Attention vectors of type-1 pairs, type-2 pairs and mixed pairs (columns).
        self.pair_vectors = nn.Parameter(
            torch.cat([_attention_vector(out_dim) for _ in range(3)], 1)
        )
        self.stack_att_proj = nn.Linear(in_dim, out_dim)
        self.stack_vector = _attention_vector(out_dim)
        self.with_att = nn.Linear(in_dim, out_dim)
        self.without_att = nn.Linear(in_dim, out_dim)
        self.stack_with_att = nn.Linear(in_dim, out_dim)
        self.stack_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)

    def forward(
        self, first: torch.Tensor, second: torch.Tensor, stack: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Update ``first`` (batch, n1, in), ``second`` (batch, n2, in) and ``stack`` (batch, 1, in).

        Returns the three updated, each with ``out_dim`` features.
        """
        n1, n2 = first.shape[1], second.shape[1]
        h = torch.cat([self.type_proj[0](first), self.type_proj[1](second)], dim=1)
        h = self.drop(h)
        pairs = h.unsqueeze(2) * h.unsqueeze(1)
        scores = torch.tanh(self.att_proj(pairs)) @ self.pair_vectors  # (b, n, n, 3)
        kind = torch.cat([torch.zeros(n1), torch.ones(n2)]).to(h.device, torch.long)
        # 0 for type-1 pairs, 1 for type-2 pairs, 2 for mixed ones.
        pair_kind = torch.where(kind[:, None] == kind[None, :], kind[:, None], 2)
        index = pair_kind.expand(h.shape[0], -1, -1).unsqueeze(-1)
        scores = scores.gather(-1, index).squeeze(-1)
        attention = torch.softmax(scores / self.temperature, dim=-1)

        stack_scores = torch.tanh(self.stack_att_proj(h * stack)) @ self.stack_vector
        stack_attention = torch.softmax(stack_scores / self.temperature, dim=1)  # over nodes
        summary = stack_attention.transpose(1, 2) @ h  # (batch, 1, in)
        new_stack = self.stack_with_att(summary) + self.stack_without_att(stack)

        out = self.with_att(attention @ h) + self.without_att(h)
        out = F.selu(_batch_norm_nodes(self.bn, out))
        return out[:, :n1], out[:, n1:], new_stack


class GraphPool(nn.Module):
    """Graph pooling: gate each node by a learned sigmoid score, keep the top ``ratio`` of them."""

    def __init__(self, dim: int, ratio: float, dropout: float = 0.3) -> None:
        super().__init__()
        self.ratio = ratio
        self.drop = nn.Dropout(dropout)
        self.score = nn.Linear(dim, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, nodes, dim)`` to ``(batch, max(1, int(nodes * ratio)), dim)``."""
        gate = torch.sigmoid(self.score(self.drop(h)))
        keep = max(int(h.shape[1] * self.ratio), 1)
        top = torch.topk(gate.squeeze(-1), keep, dim=1).indices
        return (h * gate).gather(1, top.unsqueeze(-1).expand(-1, -1, h.shape[-1]))


class _SpectroTemporalBlock(nn.Module):
    """AASIST's 2-D residual block: (BN, SELU) conv 2x3, BN, SELU, conv 2x3; max-pool time."""

    def __init__(self, c_in: int, c_out: int, first: bool, pool_time: bool) -> None:
        super().__init__()
        self.pre: nn.Module = (
            nn.Identity() if first else nn.Sequential(nn.BatchNorm2d(c_in), nn.SELU())
        )
        # The first convolution adds a row of frequency padding, the second takes it away.
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, (2, 3), padding=(1, 1)),
            nn.BatchNorm2d(c_out),
            nn.SELU(),
            nn.Conv2d(c_out, c_out, (2, 3), padding=(0, 1)),
        )
        self.shortcut: nn.Module = (
            nn.Conv2d(c_in, c_out, (1, 3), padding=(0, 1)) if c_in != c_out else nn.Identity()
        )
        # ceil: a map only a few frames long keeps at least one.
        self.pool: nn.Module = nn.MaxPool2d((1, 3), ceil_mode=True) if pool_time else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, c_in, freq, time)`` to ``(batch, c_out, freq, time / 3)``."""
        return self.pool(self.body(self.pre(x)) + self.shortcut(x))


class AASISTBackend(nn.Module):
    """AASIST after its front end: encoder, spectral and temporal graphs, HS-GAL, readout.

    Input: a map ``(batch, 1, n_freq, frames)`` (any number of frames, ``n_freq >= 3``).
    A 3x3 max-pool, BatchNorm and SELU, then one 2-D residual block per entry of
    ``channels`` (each max-pools time by 3, for the first ``time_pools`` blocks; all by
    default) give a map ``(batch, C, n_freq // 3, T)``. Its absolute maximum over time gives
    ``n_freq // 3`` spectral nodes (plus a learned position embedding), over frequency ``T``
    temporal nodes. A graph attention layer and a graph pool (``pool_ratios[0]``,
    ``pool_ratios[1]``) act on each. Two branches, each with its own stack node, apply
    HS-GAL (``gat_dims[0] -> gat_dims[1]``), a graph pool of both node sets
    (``pool_ratios[2]``) and a second HS-GAL with a residual connection; the branches are
    combined by an element-wise maximum. The readout concatenates the maximum of absolute
    values and the mean of each node set and the stack node (``5 * gat_dims[1]`` features),
    then dropout 0.5 and a linear layer give the 2 logits [real, fake].

    ``temperatures`` divide the attention scores of the spectral GAT, the temporal GAT and
    the first and second HS-GAL layers. ``pool_ratios[3]`` is kept for the published
    configurations' four-entry lists and used for nothing.
    """

    def __init__(
        self,
        n_freq: int,
        channels: Sequence[int] = (32, 32, 64, 64, 64, 64),
        gat_dims: Sequence[int] = (64, 32),
        pool_ratios: Sequence[float] = (0.5, 0.7, 0.5, 0.5),
        temperatures: Sequence[float] = (2.0, 2.0, 100.0, 100.0),
        time_pools: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(n_freq, int) or n_freq < 3:
            raise ModelConfigError(f"n_freq must be an integer >= 3, got {n_freq!r}")
        if not isinstance(channels, list | tuple) or not 1 <= len(channels) <= 12:
            raise ModelConfigError(f"channels must be a list of 1 to 12 integers, got {channels!r}")
        channels = _check_ints("channels", channels, len(channels), 1, 512)
        g1, g2 = _check_ints("gat_dims", gat_dims, 2, 1, 512)
        ratios = _check_floats("pool_ratios", pool_ratios, 4, 0.0, 1.0)
        temps = _check_floats("temperatures", temperatures, 4, 0.0, 1e6)
        pools = len(channels) if time_pools is None else time_pools
        if not isinstance(pools, int) or not 0 <= pools <= len(channels):
            raise ModelConfigError(
                f"time_pools must be an integer in [0, {len(channels)}], got {time_pools!r}"
            )
        self.stem = nn.Sequential(nn.MaxPool2d(3), nn.BatchNorm2d(1), nn.SELU())
        c_ins = (1, *channels[:-1])
        self.encoder = nn.Sequential(
            *(
                _SpectroTemporalBlock(a, b, first=i == 0, pool_time=i < pools)
                for i, (a, b) in enumerate(zip(c_ins, channels, strict=True))
            )
        )
        c = channels[-1]
        self.spectral_position = nn.Parameter(torch.zeros(1, n_freq // 3, c))
        self.spectral_gat = GraphAttention(c, g1, temps[0])
        self.temporal_gat = GraphAttention(c, g1, temps[1])
        self.spectral_pool = GraphPool(g1, ratios[0])
        self.temporal_pool = GraphPool(g1, ratios[1])
        self.stacks = nn.Parameter(torch.randn(2, 1, 1, g1))  # one stack node per branch
        self.first_hsgal = nn.ModuleList(
            [HeterogeneousGraphAttention(g1, g2, temps[2]) for _ in range(2)]
        )
        self.second_hsgal = nn.ModuleList(
            [HeterogeneousGraphAttention(g2, g2, temps[3]) for _ in range(2)]
        )
        self.branch_pools = nn.ModuleList(
            [nn.ModuleList([GraphPool(g2, ratios[2]), GraphPool(g2, ratios[2])]) for _ in range(2)]
        )
        self.branch_drop = nn.Dropout(0.2)
        self.readout_drop = nn.Dropout(0.5)
        self.out = nn.Linear(5 * g2, 2)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, 1, n_freq, frames)`` to logits ``(batch, 2)`` [real, fake]."""
        if feats.dim() != 4 or feats.shape[1] != 1:
            raise ValueError(
                f"AASISTBackend expects a map (batch, 1, freq, frames), got {tuple(feats.shape)}"
            )
        n_freq = 3 * self.spectral_position.shape[1]
        if not n_freq <= feats.shape[2] < n_freq + 3 or feats.shape[3] < 3:
            raise ValueError(
                f"AASISTBackend was built for {n_freq}-{n_freq + 2} feature rows and needs at "
                f"least 3 frames; got a map {tuple(feats.shape)}"
            )
        x = self.encoder(self.stem(feats))  # (batch, C, freq nodes, time nodes)
        magnitude = x.abs()
        spectral = magnitude.amax(dim=3).transpose(1, 2) + self.spectral_position
        temporal = magnitude.amax(dim=2).transpose(1, 2)
        spectral = self.spectral_pool(self.spectral_gat(spectral))
        temporal = self.temporal_pool(self.temporal_gat(temporal))

        branches = []
        for b in range(2):
            stack = self.stacks[b].expand(feats.shape[0], -1, -1)
            t1, s1, stack1 = self.first_hsgal[b](temporal, spectral, stack)
            pool_t, pool_s = self.branch_pools[b]
            t1, s1 = pool_t(t1), pool_s(s1)
            t2, s2, stack2 = self.second_hsgal[b](t1, s1, stack1)
            branches.append([self.branch_drop(v) for v in (t1 + t2, s1 + s2, stack1 + stack2)])
        t, s, stack = (torch.maximum(a, b) for a, b in zip(*branches, strict=True))
        readout = torch.cat(
            [
                t.abs().amax(dim=1),
                t.mean(dim=1),
                s.abs().amax(dim=1),
                s.mean(dim=1),
                stack.squeeze(1),
            ],
            dim=1,
        )
        return self.out(self.readout_drop(readout))


class AASIST(nn.Module):
    """AASIST on raw waveforms: sinc filters and :class:`AASISTBackend`, any length by default.

    Origin: Jung et al., "AASIST: audio anti-spoofing using integrated spectro-temporal graph
    attention networks" (ICASSP 2022). Defaults are the published AASIST configuration: 70 fixed mel-spaced sinc filters of
    128 taps (129 here, made odd); the absolute filter outputs form the map
    ``(batch, 1, 70, samples)``; encoder channels 32, 32, 64, 64, 64, 64; graph attention
    dimensions 64 and 32; pool ratios 0.5, 0.7, 0.5, 0.5; temperatures 2, 2, 100, 100.
    About 297 k parameters.
    """

    frontend_name = "waveform"
    _name = "aasist"

    def __init__(
        self,
        input_samples: int | None = None,
        sinc_filters: int = 70,
        sinc_kernel: int = 128,
        channels: Sequence[int] = (32, 32, 64, 64, 64, 64),
        gat_dims: Sequence[int] = (64, 32),
        pool_ratios: Sequence[float] = (0.5, 0.7, 0.5, 0.5),
        temperatures: Sequence[float] = (2.0, 2.0, 100.0, 100.0),
    ) -> None:
        super().__init__()
        self.input_samples = input_samples
        self.sinc = SincFilterbank(sinc_filters, sinc_kernel)
        self.backend = AASISTBackend(sinc_filters, channels, gat_dims, pool_ratios, temperatures)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Map waveforms ``(batch, samples)`` to logits ``(batch, 2)`` [real, fake]."""
        _check_waves(waves, self._name, self.input_samples)
        return self.backend(self.sinc(waves).abs().unsqueeze(1))


class AASISTLight(AASIST):
    """AASIST-L, the light AASIST: the same network with fewer channels, 85,306 parameters.

    Origin: the light configuration of Jung et al. (ICASSP 2022). Published configuration:
    encoder channels 32, 32, 24, 24, 24, 24; graph attention dimensions 24 and 32; pool
    ratios 0.4, 0.5, 0.7, 0.5; temperatures 2, 2, 100, 100.
    """

    _name = "aasist_l"

    def __init__(
        self,
        input_samples: int | None = None,
        sinc_filters: int = 70,
        sinc_kernel: int = 128,
        channels: Sequence[int] = (32, 32, 24, 24, 24, 24),
        gat_dims: Sequence[int] = (24, 32),
        pool_ratios: Sequence[float] = (0.4, 0.5, 0.7, 0.5),
        temperatures: Sequence[float] = (2.0, 2.0, 100.0, 100.0),
    ) -> None:
        super().__init__(
            input_samples, sinc_filters, sinc_kernel, channels, gat_dims, pool_ratios, temperatures
        )
