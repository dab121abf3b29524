"""PyTorch side of bench_fashion: the same model, recipe and data as tests/bench/bench_fashion.c,
one thread. DATA is the file bench_fashion writes: 2560*784 float32 images then 2560 int32
labels (native byte order). Prints the rounds and `pytorch_steps_per_s=<best round>`, or
`pytorch_unavailable=<why>` when torch cannot be imported.

usage: bench_fashion_torch.py DATA WARMUP STEPS_PER_ROUND ROUNDS
"""
import sys
import time


def main():
    data = sys.argv[1]
    warmup, steps, rounds = (int(a) for a in sys.argv[2:5])
    try:
        import torch
        import torch.nn as nn
    except Exception as e:  # torch missing or broken: the C side reports no ratio
        print(f"pytorch_unavailable={type(e).__name__}: {e}")
        return 0
    torch.set_num_threads(1)
    torch.manual_seed(0)
    batch, pool = 128, 20
    n = pool * batch
    with open(data, "rb") as f:
        raw = bytearray(f.read())
    if len(raw) != n * 784 * 4 + n * 4:
        print(f"pytorch_unavailable=data file {data} has {len(raw)} bytes")
        return 1
    x = torch.frombuffer(raw, dtype=torch.float32, count=n * 784).reshape(n, 784).clone()
    y = torch.frombuffer(raw, dtype=torch.int32, offset=n * 784 * 4).to(torch.int64)

    model = nn.Sequential(nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step(i):
        b = i % pool
        xb, yb = x[b * batch:(b + 1) * batch], y[b * batch:(b + 1) * batch]
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    for i in range(warmup):
        step(i)
    rates, cpu_rates = [], []
    k = warmup
    for _ in range(rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step(k)
            k += 1
        rates.append(steps / (time.perf_counter() - t0))
        cpu_rates.append(steps / (time.process_time() - c0))
    print("pytorch_rounds=" + ",".join(f"{r:.1f}" for r in rates))
    print(f"pytorch_loss={step(k).item():.4f}")
    print(f"pytorch_steps_per_s={max(rates):.2f}")
    print(f"pytorch_steps_per_cpu_s={max(cpu_rates):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
