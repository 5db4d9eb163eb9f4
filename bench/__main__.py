"""Run every benchmark and print one table each (``python -m bench``, ``make bench``).

``BENCH_CRL_ENTRIES`` sets the size of the large CRL (default 1,000,000).
"""

from __future__ import annotations

from bench import (
    bench_agent,
    bench_crl,
    bench_login,
    bench_scale,
    bench_sm2,
    bench_sso,
    bench_validation,
)


def main() -> None:
    bench_validation.main()
    bench_sm2.main()
    bench_crl.main()
    bench_login.main()
    bench_sso.main()
    bench_agent.main()
    bench_scale.main([])


if __name__ == "__main__":
    main()
