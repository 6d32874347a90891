#!/usr/bin/env python
"""Probe for the demo recipe: trains the demo-sized VideoMamba on a synthetic dataset held in memory.

    python benchmarks/demo_probe.py root=DATA_DIR epochs=40 [bs=16 lr=1e-3 scale=0.5 ps=16 T=8 D=64 depth=4
                                    extra='{"scan_order": "temporal_first"}']

DATA_DIR is a `videomamba make-synthetic` output (16 frames of 64 px). Prints val top-1 and pair accuracy
every 5 epochs, then top-1 with frames shuffled. NT=threads (default 1). A plain loop, independent of the
engine, used to compare recipes and to check the engine against.
"""
import sys, time, math, json, torch, torch.nn.functional as F
import videomamba
from videomamba.data.video import open_video
torch.set_num_threads(int(__import__('os').environ.get('NT', '1')))
args = dict(a.split('=') for a in sys.argv[1:])
root = args['root']
D = int(args.get('D', 64)); depth = int(args.get('depth', 4)); ps = int(args.get('ps', 16))
T = int(args.get('T', 8)); size = int(args.get('size', 64)); epochs = int(args.get('epochs', 20))
lr = float(args.get('lr', 1e-3)); bs = int(args.get('bs', 16)); wd = float(args.get('wd', 0.05))
scale = float(args.get('scale', 0.5)); ntrain = int(args.get('ntrain', 10000)); ls = float(args.get('ls', 0.1))
dp = float(args.get('dp', 0.0)); seed = int(args.get('seed', 0)); warm = float(args.get('warm', 1))
extra = json.loads(args.get('extra', '{}'))
def load(csv):
    xs, ys = [], []
    for line in open(f'{root}/{csv}'):
        rel, lab = line.strip().rsplit(',', 1)
        with open_video(f'{root}/{rel}') as r:
            fr = r.get_frames(list(range(r.info.num_frames)))
        xs.append(fr.permute(3, 0, 1, 2)); ys.append(int(lab))
    return torch.stack(xs), torch.tensor(ys)
t0 = time.time()
Xtr, Ytr = load('train.csv'); Xva, Yva = load('val.csv')
Xtr, Ytr = Xtr[:ntrain], Ytr[:ntrain]
print('loaded', Xtr.shape, Xva.shape, f'{time.time()-t0:.1f}s', flush=True)
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1, 1) * 255; std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1, 1) * 255
g = torch.Generator().manual_seed(seed)
def sample_train(x):
    B, C, L = x.shape[:3]
    seg = L / T
    idx = (torch.arange(T) * seg + torch.rand(B, T, generator=g) * seg).long().clamp(max=L - 1)
    x = torch.stack([x[b][:, idx[b]] for b in range(B)])
    out = []
    for b in range(B):
        s = math.sqrt(float(torch.empty(1).uniform_(scale, 1.0, generator=g)))
        h = max(8, int(round(size * s))); i = int(torch.randint(0, size - h + 1, (1,), generator=g)); j = int(torch.randint(0, size - h + 1, (1,), generator=g))
        c = x[b][:, :, i:i + h, j:j + h].float()
        out.append(F.interpolate(c, size=(size, size), mode='bilinear', align_corners=False, antialias=True) if h != size else c)
    return (torch.stack(out) - mean) / std
def sample_val(x):
    L = x.shape[2]; seg = L / T
    idx = (torch.arange(T) * seg + seg / 2).long()
    return (x[:, :, idx].float() - mean) / std
torch.manual_seed(seed)
m = videomamba.create_model('videomamba_tiny', embed_dim=D, depth=depth, num_classes=8, num_frames=T, img_size=size, patch_size=ps, drop_path_rate=dp, **extra)
nd = set(m.no_weight_decay())
decay = [p for n, p in m.named_parameters() if p.ndim > 1 and not any(k in n for k in nd) and 'A_log' not in n]
nodecay = [p for n, p in m.named_parameters() if not (p.ndim > 1 and not any(k in n for k in nd) and 'A_log' not in n)]
opt = torch.optim.AdamW([{'params': decay, 'weight_decay': wd}, {'params': nodecay, 'weight_decay': 0}], lr=lr)
steps_per = len(Xtr) // bs; total = epochs * steps_per; wsteps = int(warm * steps_per)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / wsteps if s < wsteps else 0.5 * (1 + math.cos(math.pi * (s - wsteps) / max(1, total - wsteps))))
def evaluate(shuffle=False):
    m.eval(); correct = 0; pair = 0
    with torch.no_grad():
        for i in range(0, len(Xva), 50):
            x = sample_val(Xva[i:i + 50])
            if shuffle:
                x = x[:, :, torch.randperm(T, generator=torch.Generator().manual_seed(i))]
            p = m(x).argmax(-1); y = Yva[i:i + 50]
            correct += (p == y).sum().item(); pair += (p // 2 == y // 2).sum().item()
    m.train(); return 100 * correct / len(Xva), 100 * pair / len(Xva)
t1 = time.time()
for ep in range(epochs):
    perm = torch.randperm(len(Xtr), generator=g); tl = 0
    for s in range(steps_per):
        b = perm[s * bs:(s + 1) * bs]
        x = sample_train(Xtr[b]); y = Ytr[b]
        loss = F.cross_entropy(m(x), y, label_smoothing=ls)
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); sched.step(); tl += loss.item()
    if ep % 5 == 4 or ep == epochs - 1:
        print(f'ep {ep+1} loss {tl/steps_per:.3f} val {evaluate()} t {time.time()-t1:.0f}s', flush=True)
print('final', evaluate(), 'shuffled', evaluate(True), f'train {time.time()-t1:.0f}s', args, flush=True)
