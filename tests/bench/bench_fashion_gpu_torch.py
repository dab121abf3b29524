"""PyTorch side of bench_fashion_gpu: the same model, recipe and data as
tests/bench/bench_fashion_gpu.c, eager mode on the GPU. DATA is the file bench_fashion_gpu
writes: 2560*784 float32 images then 2560 int32 labels (native byte order). Each step uploads
its batch from (pageable) host memory and reads the loss back with .item(), like the C side.
FP32 throughout (TF32 off for matmuls, like nnscope's default). Prints the rounds and
`pytorch_steps_per_s=<best round>`, or `pytorch_unavailable=<why>`.

usage: bench_fashion_gpu_torch.py DATA WARMUP STEPS_PER_ROUND ROUNDS
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
    if not torch.cuda.is_available():
        print(f"pytorch_unavailable=torch {torch.__version__} sees no CUDA device")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
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
                          nn.Linear(256, 10)).to(dev)
    # foreach=True: PyTorch's multi-tensor Adam (its default on CUDA), the fastest eager option.
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step(i):
        b = i % pool
        xb = x[b * batch:(b + 1) * batch].to(dev)
        yb = y[b * batch:(b + 1) * batch].to(dev)
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss.item()

    for i in range(warmup):
        step(i)
    torch.cuda.synchronize()
    rates = []
    k = warmup
    last = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            last = step(k)
            k += 1
        rates.append(steps / (time.perf_counter() - t0))
    print(f"pytorch_version={torch.__version__} device={torch.cuda.get_device_name(0)}")
    print("pytorch_rounds=" + ",".join(f"{r:.1f}" for r in rates))
    print(f"pytorch_loss={last:.4f}")
    best = max(rates)
    print(f"pytorch_steps_per_s={best:.1f} ({1e6 / best:.1f} us/step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
