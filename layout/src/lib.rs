//! Layout logic (placement, flexfiles layouts, DS capabilities). Filled in by the pNFS issue.
