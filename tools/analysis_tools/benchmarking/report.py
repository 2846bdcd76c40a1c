# Copyright (c) mmdetr contributors. All rights reserved.
"""How it is reported: the table, the JSON file and the ``speedup`` line."""
import json
from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence

import torch


@dataclass
class ValueRow:
    """A row that is not a time: one value per model (bytes, a count ...).

    Attributes:
        name (str): the row's name.
        mmdet (float): mmdet's value, in ``unit`` times ``scale``.
        mmdetr (float): mmdetr's value.
        unit (str): printed after each value, e.g. ``'MiB'``.
        scale (float): the values are divided by it for printing.
    """
    name: str
    mmdet: float
    mmdetr: float
    unit: str = ''
    scale: float = 1.0

    def line(self) -> str:
        """The table line: both values and mmdet/mmdetr."""
        ratio = self.mmdet / self.mmdetr if self.mmdetr else float('inf')
        return (f'{self.name:18s}{self.mmdet / self.scale:9.0f}{self.unit}'
                f'{self.mmdetr / self.scale:9.0f}{self.unit}{ratio:13.2f}x')


def print_table(rows: Sequence[dict], values: Sequence[ValueRow], args,
                device_name: str) -> None:
    """The timed rows (see ``timing.compare``), then the value rows."""
    print(f'\nmmdet 3.3 DETR vs mmdetr DETR on {device_name}, '
          f'{torch.get_num_threads()} threads, torch {torch.__version__}'
          f'{", AMP" if args.amp else ""}; {args.clock} time, medians of '
          f'{args.repeats} rounds ({args.match_repeats} for match/targets)')
    print(f'{"":18s}{"mmdet":>12s}{"mmdetr":>12s}{"mmdet/mmdetr":>14s}'
          f'{"spread":>16s}')
    for r in rows:
        print(f'{r["name"]:18s}{r["mmdet"]:10.1f}ms{r["mmdetr"]:10.1f}ms'
              f'{r["ratio"]:13.2f}x{r["spread"][0]:9.2f}-'
              f'{r["spread"][1]:.2f}')
    for v in values:
        print(v.line())


def write_json(path: str, rows: Sequence[dict], values: List[ValueRow],
               args, roofline: Optional[dict] = None) -> None:
    """``rows`` and ``values`` as :func:`print_table` gets them, ``memory``
    (mmdet's and mmdetr's peak bytes, or null), ``roofline``
    (``roofline.to_json``'s, or null) and the options."""
    memory = next(((v.mmdet, v.mmdetr)
                   for v in values if v.name == 'train peak memory'), None)
    with open(path, 'w') as f:
        json.dump(
            dict(rows=list(rows), values=[asdict(v) for v in values],
                 memory=memory, roofline=roofline, args=vars(args)),
            f, indent=1)


def speedup_line(rows: Sequence[dict]) -> str:
    """``speedup train=X.XX infer=X.XX match=X.XX``: the last line."""
    speed = {r['name']: r['ratio'] for r in rows}
    return (f'speedup train={speed["train"]:.2f} '
            f'infer={speed["infer"]:.2f} match={speed["match"]:.2f}')
