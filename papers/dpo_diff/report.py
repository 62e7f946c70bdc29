"""Stage `report`: claims -> verdicts, figures (prompts with images, loss vs evaluations, shortcut vs full
gradient) and reports/dpo_diff/README.md (prose: report.md), logged to MLflow."""

import numpy as np

from common.cli import run_main
from common.report import table
from common.report_stage import ReportStage
from papers.dpo_diff.evaluate import OPTIMISERS, SPACES


def loss_curves(st):
    """Best-so-far loss minus the user prompt's (optimisation seeds) vs evaluations, mean and 95% interval over
    user prompts (paired: the prompts' own loss levels differ far more than the optimisers)."""
    from scipy import stats

    curves = st.results["curves"]
    user = {r["user"]: r["opt_loss"] for r in st.results["finals"] if r["optimiser"] == "user"}
    with st.figure("loss_vs_evaluations", figsize=(9, 3.4), ncols=2) as axes:
        for ax, space in zip(axes, SPACES):
            for name in OPTIMISERS:
                ys = [np.array(c["best"]) - user[c["user"]] for c in curves if c["space"] == space and c["optimiser"] == name]
                n = min(len(y) for y in ys) if len(ys) else 0
                ys = np.array([y[:n] for y in ys])
                m, se = ys.mean(0), ys.std(0, ddof=1) / np.sqrt(len(ys)) if len(ys) > 1 else np.zeros(n)
                h = se * stats.t.ppf(0.975, max(len(ys) - 1, 1))
                x = np.arange(1, n + 1)
                ax.plot(x, m, label=name)
                ax.fill_between(x, m - h, m + h, alpha=0.15)
            ax.set(xlabel="evaluations (full generations)", ylabel="best loss so far - user prompt's",
                   title=f"{space} space (paired per user prompt)")


def prompt_grid(st):
    """The user prompt's images beside the optimised prompts' (fresh seeds), with the prompt text."""
    images = np.load(st.out / "examples.npz")  # uint8 [n, 3, 32, 32] per example, in results.json's order
    ex = [{**e, "images": images[f"example{i}"]} for i, e in enumerate(st.results["examples"])]
    users = sorted({e["user"] for e in ex})[:3]
    rows = [e for e in ex if e["user"] in users]
    per = 3
    with st.figure("optimised_prompts", figsize=(12, 1.9 * len(rows)), nrows=len(rows), ncols=1) as axes:
        for ax, e in zip(np.atleast_1d(axes), rows):
            img = np.concatenate([i.transpose(1, 2, 0) for i in e["images"]], axis=1)
            ax.imshow(img, extent=(0, per * len(e["images"]), 0, per))
            ax.set_xlim(0, 40)
            text = f"{e['label']}\n+ {e['prompt']}" + (f"\n- {e['negative']}" if e["negative"] else "")
            ax.text(per * len(e["images"]) + 0.5, per / 2, text, fontsize=6.5, va="center", wrap=True)
            ax.axis("off")


def gradient_scatter(st):
    g = [r for r in st.results["gradcheck"]]
    with st.figure("shortcut_vs_full_gradient", figsize=(5.4, 3.6)) as ax:
        ks = sorted({r["k"] for r in g})
        for k in ks:
            ax.scatter([k + 0.1 * r["draw"] for r in g if r["k"] == k], [r["cosine"] for r in g if r["k"] == k],
                       s=12, label=f"shortcut at step {k}")
        ax.axhline(0, color="k", lw=0.5)
        ax.set(xlabel="sampler step k of the one grad call (from the noise end)",
               ylabel="cosine(shortcut, full backprop)", title="per prompt and Gumbel draw")


def final_table(st):
    fin = st.results["finals"]
    out = []
    for space in ("user", *SPACES):
        for name in ("user",) if space == "user" else OPTIMISERS:
            rs = [r for r in fin if r["space"] == space and r["optimiser"] == name]
            out.append([space, name, f"{np.mean([r['loss'] for r in rs]):.4f}",
                        f"{np.mean([r['opt_loss'] for r in rs]):.4f}", f"{np.mean([r['oracle'] for r in rs]):.3f}"])
    return table(["space", "optimiser", "loss, fresh seeds", "loss, optimisation seeds", "oracle, fresh"], out)


def main(argv=None):
    st = ReportStage.load(argv)
    loss_curves(st)
    prompt_grid(st)
    gradient_scatter(st)
    g = st.results["gradcheck"]
    grad_table = table(["step k", "mean cosine", "mean Spearman", "cases"], [
        [k, f"{np.mean([r['cosine'] for r in g if r['k'] == k]):.3f}",
         f"{np.mean([r['spearman'] for r in g if r['k'] == k]):.3f}", sum(r["k"] == k for r in g)]
        for k in sorted({r["k"] for r in g})])
    prompts = table(["user", "space", "optimiser", "positive prompt", "negative prompt", "loss (fresh)"], [
        [r["user"], r["space"], r["optimiser"], r["prompt"], r["negative"], f"{r['loss']:.4f}"]
        for r in st.results["finals"] if r["optimiser"] in ("user", "hybrid")])
    st.publish(final_table=final_table(st), grad_table=grad_table, prompts_table=prompts)


if __name__ == "__main__":
    run_main(main)
