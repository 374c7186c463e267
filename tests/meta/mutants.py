"""Submissions derived from solution.ipynb by editing one graded cell: plausible student mistakes, each of which
the grader must catch (MUTANTS), and correct but different implementations that must get full marks (CORRECT).

Each entry: name -> (part, [(old, new), ...]); every `old` must occur in the solution's cell, so an edit of the
solution that makes a mutant stale fails loudly instead of passing silently.
"""

ADDITIVE_UNET = [
    ("self.up_blocks = nn.ModuleList([ResBlock(chs[2] + chs[2], chs[2], time_emb_dim),   # cat([h, s3])\n"
     "                                        ResBlock(chs[2] + chs[1], chs[1], time_emb_dim),   # cat([h, s2])\n"
     "                                        ResBlock(chs[1] + chs[0], chs[0], time_emb_dim)])  # cat([h, s1])",
     "self.up_blocks = nn.ModuleList([ResBlock(ch, ch, time_emb_dim) for ch in (chs[2], chs[1], chs[0])])"),
    ('self.upsamples = nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest") for _ in range(2)])',
     'self.upsamples = nn.ModuleList([nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), '
     'nn.Conv2d(ch, ch // 2, 3, padding=1)) for ch in (chs[2], chs[1])])'),
    ("h = block(torch.cat([h, skips.pop()], dim=1), t_emb)", "h = block(h + skips.pop(), t_emb)"),
]

MUTANTS = {
    # the schedule and q(x_t | x_0)
    "forward: alpha instead of alpha-bar": ("forward_process", [
        ("abar = extract(self.alphas_cumprod, t)                    # (B, 1, 1, 1)",
         "abar = extract(self.alphas, t)")]),
    "forward: no square roots": ("forward_process", [
        ("return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise", "return abar * x0 + (1.0 - abar) * noise")]),
    "forward: schedule shifted by one step": ("forward_process", [
        ("betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)",
         "betas = torch.linspace(beta_start, beta_end, num_timesteps + 1, dtype=torch.float64)[1:]")]),
    "forward: 1 - cumsum(betas) for alpha-bar": ("forward_process", [
        ("alphas_cumprod = torch.cumprod(alphas, dim=0)", "alphas_cumprod = 1.0 - torch.cumsum(betas, dim=0)")]),
    "forward: ignores the given noise": ("forward_process", [
        ("(1.0 - abar).sqrt() * noise", "(1.0 - abar).sqrt() * torch.randn_like(x0)")]),
    "forward: t off by one": ("forward_process", [
        ("abar = extract(self.alphas_cumprod, t)", "abar = extract(self.alphas_cumprod, (t + 1).clamp(max=999))")]),
    "forward: schedule ignores its arguments": ("forward_process", [
        ("torch.linspace(beta_start, beta_end, num_timesteps,", "torch.linspace(1e-4, 0.02, 1000,")]),
    "forward: modifies x0 in place": ("forward_process", [
        ("return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise",
         "return x0.mul_(abar.sqrt()).add_((1.0 - abar).sqrt() * noise)")]),
    "forward: one t for the whole batch": ("forward_process", [
        ("abar = extract(self.alphas_cumprod, t)", "abar = self.alphas_cumprod[t[0]]")]),
    # the posterior and the sampler
    "posterior: variance with alpha-bar_t for alpha-bar_{t-1}": ("reverse_process", [
        ("self.betas * (1.0 - alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)",
         "self.betas * (1.0 - self.alphas_cumprod) / (1.0 - self.alphas_cumprod)")]),
    "posterior: alpha-bar_{t-1} not shifted": ("reverse_process", [
        ("F.pad(self.alphas_cumprod[:-1], (1, 0), value=1.0)", "self.alphas_cumprod.clone()")]),
    "posterior: coefficients of x0 and x_t swapped": ("reverse_process", [
        ("mean = (abar_prev.sqrt() * beta / (1 - abar)) * x0 + (alpha.sqrt() * (1 - abar_prev) / (1 - abar)) * x_t",
         "mean = (abar_prev.sqrt() * beta / (1 - abar)) * x_t + (alpha.sqrt() * (1 - abar_prev) / (1 - abar)) * x0")]),
    "step: alpha instead of alpha-bar": ("reverse_process", [
        ("abar = extract(self.alphas_cumprod, t)\n        eps", "abar = extract(self.alphas, t)\n        eps")]),
    "step: variance used as standard deviation": ("reverse_process", [
        ("sigma = beta.sqrt() * (t > 0)", "sigma = beta * (t > 0)")]),
    "step: noise added at the last step": ("reverse_process", [
        ("sigma = beta.sqrt() * (t > 0).view(-1, 1, 1, 1)", "sigma = beta.sqrt()")]),
    "step: missing square root of alpha": ("reverse_process", [
        ("* eps) / alpha.sqrt()", "* eps) / alpha")]),
    "step: sigma^2 = posterior variance instead of beta": ("reverse_process", [
        ("sigma = beta.sqrt() * (t > 0)", "sigma = self.posterior_variance[t].view(-1, 1, 1, 1).sqrt() * (t > 0)")]),
    "sampler: stops before t = 0": ("reverse_process", [
        ("range(self.num_timesteps - 1, -1, -1)", "range(self.num_timesteps - 1, 0, -1)")]),
    "sampler: starts at t = T (off by one)": ("reverse_process", [
        ("t = torch.full((x_shape[0],), step, device=device, dtype=torch.long)",
         "t = torch.full((x_shape[0],), step, device=device, dtype=torch.long).sub(1).clamp(min=0)")]),
    "sampler: ignores the generator": ("reverse_process", [
        ("x = self.p_sample_step(model, x, t, noise=randn(x_shape, generator, device))",
         "x = self.p_sample_step(model, x, t, noise=torch.randn(x_shape, device=device))")]),
    "sampler: float time steps": ("reverse_process", [
        ("t = torch.full((x_shape[0],), step, device=device, dtype=torch.long)",
         "t = torch.full((x_shape[0],), step, device=device, dtype=torch.long).float()")]),
    # the U-Net
    "unet: skips added instead of concatenated": ("unet", ADDITIVE_UNET),
    "unet: time input ignored": ("unet", [
        ("t_emb = self.time_mlp(sinusoidal_embedding(t, self.config[\"base_channels\"]))",
         "t_emb = self.time_mlp(sinusoidal_embedding(torch.zeros_like(t), self.config[\"base_channels\"]))")]),
    "unet: cosines before sines": ("unet", [
        ("return torch.cat([args.sin(), args.cos()], dim=1)", "return torch.cat([args.cos(), args.sin()], dim=1)")]),
    "unet: middle block defined but not used": ("unet", [
        ("h = self.mid_block(h, t_emb)                                         # (B, 4C, 7, 7)", "pass")]),
    "unet: skips taken first-in first-out": ("unet", [("skips.pop()", "skips.pop(0)")]),
    # the loss and the training loop
    "loss: a different noise for the target": ("training_loop", [
        ("return F.mse_loss(model(x_t, t).float(), noise)", "return F.mse_loss(model(x_t, t).float(), torch.randn_like(noise))")]),
    "loss: t never 0": ("training_loop", [
        ("t = torch.randint(0, diffusion.num_timesteps,", "t = torch.randint(1, diffusion.num_timesteps,")]),
    "loss: sum instead of mean": ("training_loop", [
        ("return F.mse_loss(model(x_t, t).float(), noise)", "return F.mse_loss(model(x_t, t).float(), noise, reduction=\"sum\")")]),
    "loss: a norm instead of the mean square": ("training_loop", [
        ("return F.mse_loss(model(x_t, t).float(), noise)", "return (model(x_t, t).float() - noise).norm()")]),
    "loss: x0 as the target": ("training_loop", [
        ("return F.mse_loss(model(x_t, t).float(), noise)", "return F.mse_loss(model(x_t, t).float(), x0)")]),
    "loss: t as floats in [0, 1)": ("training_loop", [
        ("t = torch.randint(0, diffusion.num_timesteps, (x0.shape[0],), device=x0.device)",
         "t = (torch.rand(x0.shape[0], device=x0.device) * diffusion.num_timesteps).long().float()")]),
    "train: gradients never zeroed": ("training_loop", [("optimizer.zero_grad(set_to_none=True)\n", "")]),
    "train: no optimizer step": ("training_loop", [("            optimizer.step()\n            ### END SOLUTION", "            ### END SOLUTION")]),
    "train: data rescaled to [0, 1]": ("training_loop", [
        ("with autocast(device, use_bf16):\n                loss = loss_fn(diffusion, model, x0)",
         "x0 = (x0 + 1) / 2\n            with autocast(device, use_bf16):\n                loss = loss_fn(diffusion, model, x0)")]),
    # in-painting
    "inpaint: mask inverted": ("inpainting", [
        ("torch.where(mask_known.bool(), x_known, x_unknown)", "torch.where(mask_known.bool(), x_unknown, x_known)")]),
    "inpaint: known part not noised": ("inpainting", [
        ("x_known = torch.where((t > 0).view(-1, 1, 1, 1), x_known, x0)", "x_known = x0")]),
    "inpaint: known part at t instead of t-1": ("inpainting", [
        ("diffusion(x0, (t - 1).clamp(min=0), noise=noise_known)", "diffusion(x0, t, noise=noise_known)")]),
    "inpaint: last step keeps noise on known pixels": ("inpainting", [
        ("x_known = torch.where((t > 0).view(-1, 1, 1, 1), x_known, x0)             # after the last step: x_0\n", "")]),
    "inpaint: extra draws break the seed": ("inpainting", [
        ("noise=z, noise_known=z)", "noise=z, noise_known=randn(x0.shape, generator, device))")]),
    "inpaint: noise_known ignored": ("inpainting", [("noise=noise_known)", "noise=noise)")]),
    # the two-point posterior mean
    "two points: abar without its square root": ("two_point", [("a * abar.sqrt() * x_t", "a * abar * x_t")]),
    "two points: sqrt(1 - abar) in the denominator": ("two_point", [("x_t / (1.0 - abar))", "x_t / (1.0 - abar).sqrt())")]),
    "two points: log-odds inside tanh": ("two_point", [("torch.tanh(a * abar", "torch.tanh(2 * a * abar")]),
    "two points: ignores a": ("two_point", [("return a * torch.tanh(a *", "return 0.5 * torch.tanh(0.5 *")]),
    "two points: densities written out": ("two_point", [
        ("return a * torch.tanh(a * abar.sqrt() * x_t / (1.0 - abar))",
         "plus = torch.exp(-(x_t - abar.sqrt() * a) ** 2 / (2 * (1.0 - abar)))\n"
         "    minus = torch.exp(-(x_t + abar.sqrt() * a) ** 2 / (2 * (1.0 - abar)))\n"
         "    return a * (plus - minus) / (plus + minus)")]),
    "two points: one t for the batch": ("two_point", [("abar = alphas_cumprod[t].view(", "abar = alphas_cumprod[t[:1]].view(")]),
    # DDIM
    "ddim: x0 not clipped": ("ddim", [(" / abar.sqrt()).clamp(-1, 1)", " / abar.sqrt())")]),
    "ddim: fresh noise instead of the predicted noise": ("ddim", [
        ("+ (1 - abar_prev).sqrt() * eps", "+ (1 - abar_prev).sqrt() * torch.randn_like(eps)")]),
    "ddim: last step not to the clean image": ("ddim", [
        ("torch.where(t_prev >= 0, diffusion.alphas_cumprod[t_prev.clamp(min=0)], 1.0)",
         "diffusion.alphas_cumprod[t_prev.clamp(min=0)]")]),
    "ddim: alpha instead of alpha-bar": ("ddim", [
        ("abar = extract(diffusion.alphas_cumprod, t)", "abar = extract(diffusion.alphas, t)")]),
    "ddim: 1 - abar without its square root": ("ddim", [("(x_t - (1 - abar).sqrt() * eps)", "(x_t - (1 - abar) * eps)")]),
    "ddim: stops at t = 0 without the last jump": ("ddim", [("if i + 1 < len(steps) else -1", "if i + 1 < len(steps) else 0")]),
    "ddim: new noise at every step": ("ddim", [
        ("x = ddim_step(diffusion, model, x, t, torch.full_like(t, prev))",
         "x = ddim_step(diffusion, model, x, t, torch.full_like(t, prev)) + 0.01 * randn(x_shape, generator, device)")]),
    # The independent tester's classes that passed before (skips, coefficients within about 1 %, loss_fn), and more
    # of the same classes
    "unet: no skip at 28 pixels (concatenates at 7 and 14 only)": ("unet", [
        ("ResBlock(chs[1] + chs[0], chs[0], time_emb_dim)])  # cat([h, s1])", "ResBlock(chs[1], chs[0], time_emb_dim)])"),
        ("h = block(torch.cat([h, skips.pop()], dim=1), t_emb)", "h = block(torch.cat([h, skips.pop()], dim=1) if i < 2 else h, t_emb)")]),
    "unet: no skip at 7 pixels (concatenates at 14 and 28 only)": ("unet", [
        ("ResBlock(chs[2] + chs[2], chs[2], time_emb_dim),   # cat([h, s3])", "ResBlock(chs[2], chs[2], time_emb_dim),"),
        ("h = block(torch.cat([h, skips.pop()], dim=1), t_emb)",
         "h = block(h if i == 0 else torch.cat([h, skips.pop()], dim=1), t_emb)"),
        ("skips.append(h)  ", "skips.append(h) if i < 2 else None  ")]),
    "unet: 7-pixel skip taken after the middle block": ("unet", [
        ("h = self.mid_block(h, t_emb)  ", "h = self.mid_block(h, t_emb); skips[-1] = h  ")]),
    "posterior: sqrt(abar_t) for sqrt(abar_{t-1}) in the mean": ("reverse_process", [
        ("mean = (abar_prev.sqrt() * beta / (1 - abar)) * x0", "mean = (abar.sqrt() * beta / (1 - abar)) * x0")]),
    "posterior: (1 - abar_t) for (1 - abar_{t-1}) in the x_t coefficient": ("reverse_process", [
        ("(alpha.sqrt() * (1 - abar_prev) / (1 - abar)) * x_t", "(alpha.sqrt() * (1 - abar) / (1 - abar)) * x_t")]),
    "ddim: abar_{t_prev - 1} for abar_{t_prev}": ("ddim", [
        ("diffusion.alphas_cumprod[t_prev.clamp(min=0)], 1.0)", "diffusion.alphas_cumprod_prev[t_prev.clamp(min=0)], 1.0)")]),
    "train: ignores its loss_fn": ("training_loop", [
        ("loss = loss_fn(diffusion, model, x0)", "loss = diffusion_loss(diffusion, model, x0)")]),
    "train: zero_grad only once, before the loop": ("training_loop", [
        ("optimizer.zero_grad(set_to_none=True)\n            loss.backward()", "loss.backward()"),
        ("    model.train()\n    try:", "    optimizer.zero_grad()\n    model.train()\n    try:")]),
    # Issue 25: seven classes an independent tester found the grader blind to, each with more of the same class.
    # 1. in-place changes to the caller's tensors
    "forward: scales the given noise in place": ("forward_process", [
        ("return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise", "return abar.sqrt() * x0 + noise.mul_((1.0 - abar).sqrt())")]),
    "posterior: scales x_t in place": ("reverse_process", [
        ("+ (alpha.sqrt() * (1 - abar_prev) / (1 - abar)) * x_t", "+ x_t.mul_(alpha.sqrt() * (1 - abar_prev) / (1 - abar))")]),
    "step: scales the given noise in place": ("reverse_process", [
        ("return mean + sigma * noise", "return mean + noise.mul_(sigma)")]),
    "two points: scales x_t in place": ("two_point", [
        ("return a * torch.tanh(a * abar.sqrt() * x_t / (1.0 - abar))",
         "x_t.mul_(a * abar.sqrt() / (1.0 - abar))\n    return a * torch.tanh(x_t)")]),
    "unet: unsqueezes t in place in the embedding": ("unet", [
        ("args = t.float()[:, None] * freqs[None, :]", "args = t.unsqueeze_(1).float() * freqs[None, :]")]),
    "loss: the squared error computed in place in the given noise": ("training_loop", [
        ("return F.mse_loss(model(x_t, t).float(), noise)", "return noise.sub_(model(x_t, t).float()).pow(2).mean()")]),
    "ddim: clamps t_prev in place": ("ddim", [
        ("diffusion.alphas_cumprod[t_prev.clamp(min=0)], 1.0)", "diffusion.alphas_cumprod[t_prev.clamp_(min=0)], 1.0)")]),
    "inpaint: zeroes the unknown pixels of the caller's x0": ("inpainting", [
        ("    x = randn(x0.shape, generator, device)                                   # x_{T-1}",
         "    x0.mul_(mask_known)\n    x = randn(x0.shape, generator, device)")]),
    "inpaint step: blanks the unknown pixels of the given x0": ("inpainting", [
        ("x_known = diffusion(x0, (t - 1)", "x0.masked_fill_(~mask_known.bool(), 0.0)\n    x_known = diffusion(x0, (t - 1)")]),
    "inpaint step: writes the known pixels into the given x_t": ("inpainting", [
        ("return torch.where(mask_known.bool(), x_known, x_unknown)",
         "x_t.copy_(torch.where(mask_known.bool(), x_known, x_unknown))\n    return x_t")]),
    # 7. random-number discipline in in-painting
    "inpaint: known part's noise from the global generator": ("inpainting", [
        ("noise=z, noise_known=z)", "noise=z, noise_known=torch.randn_like(x0))")]),
    "inpaint: known part's noise left to inpaint_step": ("inpainting", [("noise=z, noise_known=z)", "noise=z)")]),
    "inpaint: known part's noise from randn without the generator": ("inpainting", [
        ("noise=z, noise_known=z)", "noise=z, noise_known=randn(x0.shape, None, device))")]),
    # 2. inputs of every shape the docstring allows
    "two points: abar shaped (B, 1, 1, 1) whatever x_t": ("two_point", [
        ("abar = alphas_cumprod[t].view(-1, *[1] * (x_t.dim() - 1))", "abar = alphas_cumprod[t].view(-1, 1, 1, 1)")]),
    "two points: the setup's extract for abar": ("two_point", [
        ("abar = alphas_cumprod[t].view(-1, *[1] * (x_t.dim() - 1))", "abar = extract(alphas_cumprod, t)")]),
    "two points: abar[:, None, None, None]": ("two_point", [
        ("abar = alphas_cumprod[t].view(-1, *[1] * (x_t.dim() - 1))", "abar = alphas_cumprod[t][:, None, None, None]")]),
    "forward: computed on flattened 28 x 28 images": ("forward_process", [
        ("return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise",
         "abar = abar.view(-1, 1)\n        return (abar.sqrt() * x0.view(len(x0), -1) + (1.0 - abar).sqrt() * "
         "noise.view(len(x0), -1)).view(-1, 1, 28, 28)")]),
    # 3. time conditioning that reaches some blocks only
    "unet: time reaches the first block only": ("unet", [
        ("h = block(h, t_emb)\n", "h = block(h, t_emb if i == 0 else torch.zeros_like(t_emb))\n"),
        ("h = self.mid_block(h, t_emb)", "h = self.mid_block(h, torch.zeros_like(t_emb))"),
        ("h = block(torch.cat([h, skips.pop()], dim=1), t_emb)", "h = block(torch.cat([h, skips.pop()], dim=1), torch.zeros_like(t_emb))")]),
    "unet: time reaches the encoder only": ("unet", [
        ("h = self.mid_block(h, t_emb)", "h = self.mid_block(h, torch.zeros_like(t_emb))"),
        ("h = block(torch.cat([h, skips.pop()], dim=1), t_emb)", "h = block(torch.cat([h, skips.pop()], dim=1), torch.zeros_like(t_emb))")]),
    "unet: time reaches the decoder only": ("unet", [
        ("h = block(h, t_emb)\n", "h = block(h, torch.zeros_like(t_emb))\n"),
        ("h = self.mid_block(h, t_emb)", "h = self.mid_block(h, torch.zeros_like(t_emb))")]),
    "unet: time reaches the middle block only": ("unet", [
        ("h = block(h, t_emb)\n", "h = block(h, torch.zeros_like(t_emb))\n"),
        ("h = block(torch.cat([h, skips.pop()], dim=1), t_emb)", "h = block(torch.cat([h, skips.pop()], dim=1), torch.zeros_like(t_emb))")]),
    # 4. a skip that is concatenated but not used
    "unet: skip concatenated, block fed h with channels made by a 1x1 conv": ("unet", [
        ("self.norm_out = nn.GroupNorm(8, C)",
         "self.fills = nn.ModuleList([nn.Conv2d(a, b, 1) for a, b in ((chs[2], chs[2]), (chs[2], chs[1]), (chs[1], chs[0]))])\n"
         "        self.norm_out = nn.GroupNorm(8, C)"),
        ("h = block(torch.cat([h, skips.pop()], dim=1), t_emb)",
         "joined = torch.cat([h, skips.pop()], dim=1)\n"
         "            h = block(torch.cat([h, self.fills[i](h)], dim=1), t_emb)")]),
    "unet: skip concatenated, block fed h padded with zeros": ("unet", [
        ("h = block(torch.cat([h, skips.pop()], dim=1), t_emb)",
         "joined = torch.cat([h, skips.pop()], dim=1)\n"
         "            h = block(F.pad(h, (0, 0, 0, 0, 0, joined.shape[1] - h.shape[1])), t_emb)")]),
    "unet: skip at 28 pixels concatenated but not used": ("unet", [
        ("h = block(torch.cat([h, skips.pop()], dim=1), t_emb)",
         "joined = torch.cat([h, skips.pop()], dim=1)\n"
         "            h = block(joined if i < 2 else F.pad(h, (0, 0, 0, 0, 0, joined.shape[1] - h.shape[1])), t_emb)")]),
    "unet: zeros concatenated in place of each skip": ("unet", [
        ("h = block(torch.cat([h, skips.pop()], dim=1), t_emb)", "h = block(torch.cat([h, torch.zeros_like(skips.pop())], dim=1), t_emb)")]),
    "unet: skip multiplied by zero before the concatenation": ("unet", [
        ("h = block(torch.cat([h, skips.pop()], dim=1), t_emb)", "h = block(torch.cat([h, 0 * skips.pop().detach()], dim=1), t_emb)")]),
    # 5. a squashed output
    "unet: tanh on the output": ("unet", [
        ("return self.conv_out(F.silu(self.norm_out(h)))", "return torch.tanh(self.conv_out(F.silu(self.norm_out(h))))")]),
    "unet: output clamped to [-1, 1]": ("unet", [
        ("return self.conv_out(F.silu(self.norm_out(h)))", "return self.conv_out(F.silu(self.norm_out(h))).clamp(-1, 1)")]),
    "unet: 2 sigmoid - 1 on the output": ("unet", [
        ("return self.conv_out(F.silu(self.norm_out(h)))",
         "return 2 * torch.sigmoid(self.conv_out(F.silu(self.norm_out(h)))) - 1")]),
    "unet: nn.Tanh in an output head": ("unet", [
        ("self.conv_out = nn.Conv2d(C, img_channels, 3, padding=1)",
         "self.conv_out = nn.Sequential(nn.Conv2d(C, img_channels, 3, padding=1), nn.Tanh())")]),
    "inpaint step: mask expanded to (B, 1, H, W)": ("inpainting", [
        ("return torch.where(mask_known.bool(), x_known, x_unknown)",
         "return torch.where(mask_known.bool().expand(x_t.shape[0], 1, *x_t.shape[2:]), x_known, x_unknown)")]),
    # 6. the distribution of t in the loss (every step occurs, but not uniformly)
    "loss: t = T * u ** 2, small t far more often": ("training_loop", [
        ("t = torch.randint(0, diffusion.num_timesteps, (x0.shape[0],), device=x0.device)",
         "t = (torch.rand(x0.shape[0], device=x0.device) ** 2 * diffusion.num_timesteps).long()")]),
    "loss: half the batch from the first half of the steps": ("training_loop", [
        ("t = torch.randint(0, diffusion.num_timesteps, (x0.shape[0],), device=x0.device)",
         "B, T = x0.shape[0], diffusion.num_timesteps\n        t = torch.cat([torch.randint(0, T // 2, (B // 2,)), "
         "torch.randint(0, T, (B - B // 2,))]).to(x0.device)")]),
    "loss: t weighted from 2 down to 1": ("training_loop", [
        ("t = torch.randint(0, diffusion.num_timesteps, (x0.shape[0],), device=x0.device)",
         "weights = torch.linspace(2, 1, diffusion.num_timesteps)\n"
         "        t = torch.multinomial(weights, x0.shape[0], replacement=True).to(x0.device)")]),
}

CORRECT = {
    "forward with torch.gather": ("forward_process", [
        ("abar = extract(self.alphas_cumprod, t)", "abar = self.alphas_cumprod.gather(0, t).view(-1, 1, 1, 1)")]),
    "schedule as exp(cumsum(log))": ("forward_process", [
        ("alphas_cumprod = torch.cumprod(alphas, dim=0)", "alphas_cumprod = torch.exp(torch.cumsum(torch.log(alphas), dim=0))")]),
    "schedule in float32 with a loop": ("forward_process", [
        ("alphas_cumprod = torch.cumprod(alphas, dim=0)",
         "alphas = alphas.float()\n        alphas_cumprod = torch.empty_like(alphas)\n        running = 1.0\n"
         "        for i in range(num_timesteps):\n            running = running * alphas[i]\n            alphas_cumprod[i] = running")]),
    "posterior and step as loops over the batch": ("reverse_process", [
        ("mean = (abar_prev.sqrt() * beta / (1 - abar)) * x0 + (alpha.sqrt() * (1 - abar_prev) / (1 - abar)) * x_t",
         "mean = torch.stack([(abar_prev[i].sqrt() * beta[i] / (1 - abar[i])) * x0[i]"
         " + (alpha[i].sqrt() * (1 - abar_prev[i]) / (1 - abar[i])) * x_t[i] for i in range(len(t))])"),
        ("mean = (x_t - beta / (1.0 - abar).sqrt() * eps) / alpha.sqrt()       # eq. 11",
         "mean = torch.stack([(x_t[i] - beta[i] / (1.0 - abar[i]).sqrt() * eps[i]) / alpha[i].sqrt() for i in range(len(t))])")]),
    "step through the estimate of x0 and eq. 7": ("reverse_process", [
        ("mean = (x_t - beta / (1.0 - abar).sqrt() * eps) / alpha.sqrt()       # eq. 11",
         "x0_hat = (x_t - (1.0 - abar).sqrt() * eps) / abar.sqrt()\n"
         "        mean, _ = self.posterior_mean_variance(x0_hat, x_t, t)")]),
    "float64 buffers": ("reverse_process", [
        ("self.register_buffer(\"posterior_variance\", posterior_variance.float())",
         "self.register_buffer(\"posterior_variance\", posterior_variance.double())")]),
    "U-Net with channels (C, 2C, 2C)": ("unet", [("chs = [C, 2 * C, 4 * C]", "chs = [C, 2 * C, 2 * C]")]),
    "U-Net with torch.concat and a skip from conv_in": ("unet", [
        ("self.conv_out = nn.Conv2d(C, img_channels, 3, padding=1)",
         "self.conv_out = nn.Conv2d(2 * C, img_channels, 3, padding=1)"),
        ("return self.conv_out(F.silu(self.norm_out(h)))",
         "return self.conv_out(torch.concat([F.silu(self.norm_out(h)), first], dim=1))"),
        ("h = self.conv_in(x)", "h = first = self.conv_in(x)"),
        ("h = block(torch.cat([h, skips.pop()], dim=1), t_emb)", "h = block(torch.concat((h, skips.pop()), 1), t_emb)"),
    ]),
    "loss written out by hand": ("training_loop", [
        ("return F.mse_loss(model(x_t, t).float(), noise)", "return ((model(x_t, t).float() - noise) ** 2).mean()")]),
    "training step with zero_grad after step": ("training_loop", [
        ("optimizer.zero_grad(set_to_none=True)\n            loss.backward()\n            optimizer.step()",
         "loss.backward()\n            optimizer.step()\n            optimizer.zero_grad()")]),
    "two-point mean with a sigmoid": ("two_point", [
        ("return a * torch.tanh(a * abar.sqrt() * x_t / (1.0 - abar))",
         "return a * (2 * torch.sigmoid(2 * a * abar.sqrt() * x_t / (1.0 - abar)) - 1)")]),
    "ddim with a loop over the batch for abar_prev": ("ddim", [
        ("abar_prev = torch.where(t_prev >= 0, diffusion.alphas_cumprod[t_prev.clamp(min=0)], 1.0).view(-1, 1, 1, 1)",
         "abar_prev = torch.stack([diffusion.alphas_cumprod[p] if p >= 0 else torch.tensor(1.0) "
         "for p in t_prev.tolist()]).view(-1, 1, 1, 1)")]),
    "in-painting with a float mask": ("inpainting", [
        ("return torch.where(mask_known.bool(), x_known, x_unknown)",
         "m = mask_known.to(x_t.dtype)\n    return m * x_known + (1 - m) * x_unknown")]),
    # other correct ways to draw t uniformly (issue 25's chi-square check must pass them all)
    "loss draws t with torch.multinomial": ("training_loop", [
        ("t = torch.randint(0, diffusion.num_timesteps, (x0.shape[0],), device=x0.device)",
         "t = torch.multinomial(torch.ones(diffusion.num_timesteps), x0.shape[0], replacement=True).to(x0.device)")]),
    "loss draws t as (T * u).long()": ("training_loop", [
        ("t = torch.randint(0, diffusion.num_timesteps, (x0.shape[0],), device=x0.device)",
         "t = (torch.rand(x0.shape[0], device=x0.device) * diffusion.num_timesteps).long()")]),
    "loss draws t from a generator of its own": ("training_loop", [
        ("t = torch.randint(0, diffusion.num_timesteps, (x0.shape[0],), device=x0.device)",
         "g = globals().setdefault('_t_generator', torch.Generator().manual_seed(1234))\n"
         "        t = torch.randint(0, diffusion.num_timesteps, (x0.shape[0],), generator=g).to(x0.device)")]),
    "U-Net concatenating with axis=1": ("unet", [
        ("h = block(torch.cat([h, skips.pop()], dim=1), t_emb)", "h = block(torch.cat([h, skips.pop()], axis=1), t_emb)")]),
    "two-point mean broadcasting over the last axis": ("two_point", [
        ("abar = alphas_cumprod[t].view(-1, *[1] * (x_t.dim() - 1))", "abar = alphas_cumprod[t]"),
        ("return a * torch.tanh(a * abar.sqrt() * x_t / (1.0 - abar))",
         "return (a * torch.tanh(a * abar.sqrt() * x_t.movedim(0, -1) / (1.0 - abar))).movedim(-1, 0)")]),
    # practices that the checks once refused (issue: correct work never loses a point)
    "training step with gradient clipping": ("training_loop", [
        ("loss.backward()\n            optimizer.step()",
         "loss.backward()\n            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n            optimizer.step()")]),
    "training step with value clipping and model.zero_grad()": ("training_loop", [
        ("optimizer.zero_grad(set_to_none=True)\n            loss.backward()\n            optimizer.step()",
         "model.zero_grad()\n            loss.backward()\n            torch.nn.utils.clip_grad_value_(model.parameters(), 0.05)\n"
         "            optimizer.step()")]),
    # the DDPM paper trains with dropout 0.1 in its residual blocks (issue 24: this once lost a U-Net check)
    "U-Net with Dropout(0.1) in the ResBlock": ("unet", [
        ("        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)\n",
         "        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)\n        self.dropout = nn.Dropout(0.1)\n"),
        ("h = self.conv2(F.silu(self.norm2(h)))", "h = self.conv2(self.dropout(F.silu(self.norm2(h))))")]),
    "U-Net with zero-initialised output and residual convolutions": ("unet", [
        ("self.label_emb = nn.Embedding(num_classes + 1, time_emb_dim) if num_classes else None",
         "self.label_emb = nn.Embedding(num_classes + 1, time_emb_dim) if num_classes else None\n"
         "        for conv in [self.conv_out] + [b.conv2 for b in [*self.down_blocks, self.mid_block, *self.up_blocks]]:\n"
         "            nn.init.zeros_(conv.weight)\n            nn.init.zeros_(conv.bias)")]),
    "samplers under inference_mode, printing, warning and with progress bars always on": ("reverse_process", [
        ("for step in tqdm(range(self.num_timesteps - 1, -1, -1), desc=\"sampling\", disable=not progress):",
         "print('sampling', x_shape)\n        import sys, warnings\n        warnings.warn('sampling takes a while')\n"
         "        print('starting', file=sys.stderr)\n"
         "        for step in tqdm(range(self.num_timesteps - 1, -1, -1), desc=\"sampling\"):"),
        ("x = self.p_sample_step(model, x, t, noise=randn(x_shape, generator, device))",
         "with torch.inference_mode():\n                x = self.p_sample_step(model, x, torch.tensor(t), noise=randn(x_shape, generator, device))")]),
}
