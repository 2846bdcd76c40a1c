# Copyright (c) mmdetr contributors. All rights reserved.
from .duplicates import (DuplicateMetric, count_duplicates, duplicate_pairs,
                         format_duplicates)

__all__ = [
    'DuplicateMetric', 'count_duplicates', 'duplicate_pairs',
    'format_duplicates'
]
