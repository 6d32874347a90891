#!/usr/bin/env python
"""Probe for the demo recipe: trains the demo-sized VideoMamba on a synthetic dataset held in memory.

    python benchmarks/demo_probe.py root=DATA_DIR [steps=5000 total=7200 ev=1000 seed=1 lr=2e-3 warm=100
        init=fan_in pos=0.3 aug=reverse bs=8 wd=0.05 ls=0.1 dp=0 D=64 depth=4 ps=16 T=8 size=64
        extra='{"scan_order": "temporal_first"}' tag=NAME]

DATA_DIR is a `videomamba make-synthetic` output (16 frames of 64 px; `--per-class 600` for the demo's
size). A plain loop, independent of the engine, used to compare recipes quickly and to check the engine
against: AdamW (no decay on 1-d params, A_log and the no_weight_decay tables), linear warm-up then cosine
over `total` steps (stopping at `steps`), clip 1.0, label smoothing, segment sampling. `aug`: comma-separated
symmetries (hflip, vflip, transpose, reverse), each applied with p=0.5 and relabelled through the
dataset's meta.json label_maps, as `augment.symmetries` does in the engine. Prints val top-1 and
right-pair accuracy every `ev` steps, then the confusion matrix and both figures with each batch's frames
shuffled. NT=threads (default 1). The first run caches the decoded videos in DATA_DIR/probe_cache.pt.
"""
import json, math, os, sys, time
import torch, torch.nn.functional as F
import videomamba
from videomamba.data.transforms import apply_symmetry
from videomamba.data.video import open_video

torch.set_num_threads(int(os.environ.get('NT', '1')))
args = dict(a.split('=', 1) for a in sys.argv[1:])
root = args['root']
D = int(args.get('D', 64)); depth = int(args.get('depth', 4)); ps = int(args.get('ps', 16))
T = int(args.get('T', 8)); size = int(args.get('size', 64)); steps = int(args.get('steps', 5000))
total = int(args.get('total', steps)); ev = int(args.get('ev', 1000)); seed = int(args.get('seed', 0))
lr = float(args.get('lr', 2e-3)); warm = int(args.get('warm', 100)); bs = int(args.get('bs', 8))
wd = float(args.get('wd', 0.05)); ls = float(args.get('ls', 0.1)); dp = float(args.get('dp', 0.0))
init = args.get('init', 'fan_in'); pos = args.get('pos', '0.3'); pos = None if pos == 'none' else float(pos)
aug = [a for a in args.get('aug', 'reverse').split(',') if a]; tag = args.get('tag', '')
extra = json.loads(args.get('extra', '{}'))

cache = os.path.join(root, 'probe_cache.pt')
if os.path.exists(cache):
    Xtr, Ytr, Xva, Yva = torch.load(cache)
else:
    def load(csv):
        xs, ys = [], []
        for line in open(os.path.join(root, csv)):
            rel, lab = line.strip().rsplit(',', 1)
            with open_video(os.path.join(root, rel)) as r:
                fr = r.get_frames(list(range(r.info.num_frames)))
            xs.append(fr.permute(0, 3, 1, 2)); ys.append(int(lab))      # (T, C, H, W) uint8
        return torch.stack(xs), torch.tensor(ys)
    Xtr, Ytr = load('train.csv'); Xva, Yva = load('val.csv'); torch.save((Xtr, Ytr, Xva, Yva), cache)
meta = json.load(open(os.path.join(root, 'meta.json')))
classes = meta['classes']; index = {c: i for i, c in enumerate(classes)}
perms = {s: torch.tensor([index[meta['label_maps'][s].get(c, c)] for c in classes]) for s in aug}
pair_of = torch.tensor([next(k for k, p in enumerate(meta['pairs']) if c in p) for c in classes])

mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1, 1) * 255
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1, 1) * 255
g = torch.Generator().manual_seed(seed)


def resized(x):                                   # (B, T, C, H, W) uint8 -> normalised (B, C, T, size, size)
    B, T_, C, H, W = x.shape
    x = x.float()
    if H != size:
        x = F.interpolate(x.reshape(B * T_, C, H, W), size=(size, size), mode='bilinear', align_corners=False,
                          antialias=True).reshape(B, T_, C, size, size)
    return (x.transpose(1, 2) - mean) / std


def train_batch(idx):
    x, y = Xtr[idx], Ytr[idx].clone()
    L = x.shape[1]; seg = L / T
    t = (torch.arange(T) * seg + torch.rand(len(idx), T, generator=g) * seg).long().clamp(max=L - 1)
    clips = []
    for b in range(len(idx)):
        clip = x[b, t[b]]
        for s in aug:
            if torch.rand(1, generator=g) < 0.5:
                clip, y[b] = apply_symmetry(clip, s), perms[s][y[b]]
        clips.append(clip)
    return resized(torch.stack(clips)), y


def val_clips(x):
    L = x.shape[1]; seg = L / T
    return resized(x[:, (torch.arange(T) * seg + seg / 2).long()])


torch.manual_seed(seed)
m = videomamba.create_model('videomamba_tiny', embed_dim=D, depth=depth, num_classes=len(classes), num_frames=T,
                            img_size=size, patch_size=ps, drop_path_rate=dp, init=init, pos_init_std=pos, **extra)
nd = set(m.no_weight_decay())
decay = lambda n, p: p.ndim > 1 and n not in nd and 'A_log' not in n
opt = torch.optim.AdamW([{'params': [p for n, p in m.named_parameters() if decay(n, p)], 'weight_decay': wd},
                         {'params': [p for n, p in m.named_parameters() if not decay(n, p)], 'weight_decay': 0.0}],
                        lr=lr)
sched = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))


@torch.no_grad()
def predict(shuffle=False):
    m.eval(); out = []
    for i in range(0, len(Xva), 100):
        x = val_clips(Xva[i:i + 100])
        if shuffle:                               # one permutation per batch of 100
            x = x[:, :, torch.randperm(T, generator=torch.Generator().manual_seed(i))]
        out.append(m(x).argmax(-1))
    m.train()
    return torch.cat(out)


def scores(p):
    return round(100 * (p == Yva).float().mean().item(), 1), round(100 * (pair_of[p] == pair_of[Yva]).float().mean().item(), 1)


t0 = time.time(); step = 0; losses = []
while step < steps:
    perm = torch.randperm(len(Xtr), generator=g)
    for s in range(len(Xtr) // bs):
        x, y = train_batch(perm[s * bs:(s + 1) * bs])
        loss = F.cross_entropy(m(x), y, label_smoothing=ls)
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); sched.step()
        losses.append(loss.item()); step += 1
        if step % 100 == 0:
            msg = f'{tag} step {step} loss {sum(losses[-100:]) / 100:.3f} t {time.time() - t0:.0f}s'
            print(msg + (f' val (top1, pair) {scores(predict())}' if step % ev == 0 else ''), flush=True)
        if step >= steps:
            break
p = predict()
cm = torch.zeros(len(classes), len(classes), dtype=torch.long)
cm.index_put_((Yva, p), torch.ones_like(p), accumulate=True)
print('confusion (rows: true, columns: predicted)', classes, cm, sep='\n')
print(tag, 'final (top1, pair)', scores(p), 'shuffled', scores(predict(shuffle=True)), f'train {time.time() - t0:.0f}s',
      args, flush=True)
