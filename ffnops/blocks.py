"""How a box is cut into blocks: write boxes that tile it, read boxes with the context a canvas
needs (docs/inference.md, "Blockwise inference").

A block's *write box* is its share of the output; its *read box* is the write box grown by
``context = FOV radius + overlap`` on every side, clipped to the box. The canvas of a block floods
its read box from seeds inside its write box, so an object that crosses a face is flooded in both
blocks over a band ``2 * context`` wide, which is where the two are matched. All boxes are in the
image volume's voxels (z, y, x).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from math import prod

from ffnops.errors import FfnopsError
from ffnops.ffn.geometry import Vec3, as_vec3
from ffnops.volume import BBox


@dataclass(frozen=True)
class Block:
    """One block: its index in C order over the grid, and its write and read boxes."""

    index: int
    write: BBox
    read: BBox


@dataclass(frozen=True)
class BlockLayout:
    """The blocks of ``box``: ``block_size`` write boxes (smaller at the far faces) and
    ``context`` voxels of extra read on each side."""

    box: BBox
    block_size: Vec3
    context: Vec3

    @classmethod
    def plan(
        cls,
        box: BBox,
        block_size: Sequence[int] | None,
        fov_size: Sequence[int],
        overlap: Sequence[int],
    ) -> BlockLayout:
        """Checks the request before any work and returns its layout (``block_size`` None: one
        block, the whole box). Errors name the ``executor.*`` key to change."""
        fov = as_vec3(fov_size, "fov_size")
        over = as_vec3(overlap, "executor.overlap")
        size = box.size if block_size is None else as_vec3(block_size, "executor.block_size")
        if min(over) < 0:
            raise FfnopsError(f"executor.overlap must not be negative, got {list(over)}")
        if min(size) < 1:
            raise FfnopsError(f"executor.block_size must be positive, got {list(size)}")
        if any(o >= b for o, b in zip(over, size, strict=True)):
            raise FfnopsError(
                f"executor.overlap {list(over)} must be smaller than executor.block_size "
                f"{list(size)} on every axis (z, y, x)"
            )
        if any(b < f for b, f in zip(size, fov, strict=True)):
            raise FfnopsError(
                f"executor.block_size {list(size)} is smaller than the model's FOV {list(fov)}: "
                "a block's canvas needs at least one FOV (z, y, x)"
            )
        context = as_vec3([f // 2 + o for f, o in zip(fov, over, strict=True)])
        layout = cls(box, tuple(min(b, n) for b, n in zip(size, box.size, strict=True)), context)  # type: ignore[arg-type]
        for block in layout.blocks():
            if any(r < f for r, f in zip(block.read.size, fov, strict=True)):
                raise FfnopsError(
                    f"the block [{block.write}] at the far face of the box [{box}] reads only "
                    f"{block.read.size}, less than the FOV {list(fov)}: choose an "
                    "executor.block_size that leaves a larger last block"
                )
        return layout

    @property
    def grid(self) -> Vec3:
        """Blocks along z, y, x."""
        return as_vec3([-(-n // b) for n, b in zip(self.box.size, self.block_size, strict=True)])

    def __len__(self) -> int:
        return prod(self.grid)

    def cell(self, index: int) -> Vec3:
        """The (z, y, x) grid position of block ``index``."""
        _, gy, gx = self.grid
        return (index // (gy * gx), (index // gx) % gy, index % gx)

    def block(self, index: int) -> Block:
        cell = self.cell(index)
        start = [s + c * b for s, c, b in zip(self.box.start, cell, self.block_size, strict=True)]
        stop = [
            min(a + b, e) for a, b, e in zip(start, self.block_size, self.box.stop, strict=True)
        ]
        write = BBox(as_vec3(start), as_vec3([e - a for a, e in zip(start, stop, strict=True)]))
        grown = BBox(
            as_vec3([a - c for a, c in zip(write.start, self.context, strict=True)]),
            as_vec3([n + 2 * c for n, c in zip(write.size, self.context, strict=True)]),
        )
        read = grown.intersect(self.box)
        assert read is not None  # the write box lies in the box
        return Block(index, write, read)

    def blocks(self) -> Iterator[Block]:
        for index in range(len(self)):
            yield self.block(index)

    def index_at(self, corner: Sequence[int]) -> int:
        """The index of the block whose write box starts at ``corner``."""
        cell = [
            (c - s) // b for c, s, b in zip(corner, self.box.start, self.block_size, strict=True)
        ]
        _, gy, gx = self.grid
        return (cell[0] * gy + cell[1]) * gx + cell[2]

    def neighbours(self, block: Block) -> Iterator[Block]:
        """The other blocks whose read boxes overlap ``block``'s, in index order."""
        _, gy, gx = self.grid
        cell = self.cell(block.index)
        reach = [max(1, -(-2 * c // b)) for c, b in zip(self.context, self.block_size, strict=True)]
        ranges = [
            range(max(0, p - r), min(g, p + r + 1))
            for p, r, g in zip(cell, reach, self.grid, strict=True)
        ]
        for z, y, x in itertools.product(*ranges):
            index = (z * gy + y) * gx + x
            if index != block.index:
                other = self.block(index)
                if block.read.intersect(other.read) is not None:
                    yield other

    def later_neighbours(self, block: Block) -> Iterator[Block]:
        """:meth:`neighbours` after ``block``: each overlapping pair once, from its lower index."""
        return (other for other in self.neighbours(block) if other.index > block.index)

    def write_chunks(self) -> Vec3:
        """The output's chunk shape: a divisor of the block size (the largest up to 64, if at
        least 16; else the block size), so no two blocks ever write into one chunk."""
        chunks = []
        for b in self.block_size:
            d = max(d for d in range(1, min(64, b) + 1) if b % d == 0)
            chunks.append(d if d >= 16 else b)
        return as_vec3(chunks)

    def describe(self) -> dict[str, str]:
        """The layout as MLflow params."""
        return {
            "blockwise.blocks": str(len(self)),
            "blockwise.grid": str(list(self.grid)),
            "blockwise.block_size": str(list(self.block_size)),
            "blockwise.context": str(list(self.context)),
        }
