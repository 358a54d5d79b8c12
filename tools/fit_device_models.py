"""Fit the device models deploylens ships: one family model per (device family,
precision, runtime) group of the published rows in src/deploylens/hardware/measured/,
written to src/deploylens/hardware/device_models/.

    python tools/fit_device_models.py

The rows come from tools/import_published_rows.py; each model records which rows and
sources it rests on and its leave-one-out error.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from deploylens.calibration.published import fit_rows, read_rows
from deploylens.hardware.device_model import device_family, save
from deploylens.hardware.spec import load_catalog

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "deploylens" / "hardware"


def main() -> None:
    catalog = load_catalog()
    groups = defaultdict(list)
    for path in sorted((PACKAGE / "measured").glob("*.csv")):
        rows, problems = read_rows(path, catalog)
        if problems:
            raise SystemExit("\n".join(problems))
        for row in rows:
            groups[(device_family(catalog[row.device]), row.precision, row.runtime)].append(row)
    for (family, precision, runtime), rows in sorted(groups.items()):
        fit = fit_rows(rows, catalog)
        save(fit.model, PACKAGE / "device_models" / f"{family}-{precision}-{runtime}.json")
        print(f"{fit.model.key}: {fit.model.accuracy.describe()}; {fit.model.method}")


if __name__ == "__main__":
    main()
