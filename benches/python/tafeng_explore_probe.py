"""How far simple popularity and co-occurrence mixes get above popularity on Ta-Feng (issue 25).

Same protocol as `recsys-train train --protocol time-split` on Ta-Feng: the last 14 days are the
test window; a user is a test case with at least one purchase before the cut-off and at least one
item bought in the window that they had not bought before; the targets are those items and the
items bought before are never ranked. Full ranking over the catalogue for the single-signal rows;
the mixes rank the union of the 200 most popular items and the user's 200 best co-occurring ones.

Rows: popularity (purchase lines, the project's baseline), popularity by distinct buyers,
popularity decayed with a 14-day half-life, item-item co-occurrence over users (cosine), that
co-occurrence blended 50/50 with popularity, popularity times the user's product-subclass share,
and a logistic regression over all of these (and item age, history length) fitted on the
14 days *before* the cut-off (the validation window), so the test window is touched once.

usage: python tafeng_explore_probe.py PATH/TO/ta_feng.csv.zip
Prints one JSON line per row (recall@20, ndcg@20, and each as a ratio to popularity).
"""
import collections, csv, datetime, io, json, math, sys, zipfile

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

K = 20
POOL = 200


def load(path):
    with zipfile.ZipFile(path) as z:
        name = [n for n in z.namelist() if n.endswith(".csv")][0]
        text = io.TextIOWrapper(z.open(name), encoding="utf-8-sig")
        rows = []
        for x in csv.DictReader(text):
            m, d, y = map(int, x["TRANSACTION_DT"].split("/"))
            rows.append((datetime.date(y, m, d).toordinal(), x["CUSTOMER_ID"], x["PRODUCT_ID"], x["PRODUCT_SUBCLASS"]))
    return rows


def main():
    rows = load(sys.argv[1])
    items = {i: k for k, i in enumerate(sorted({r[2] for r in rows}))}
    users = {u: k for k, u in enumerate(sorted({r[1] for r in rows}))}
    cats = {c: k for k, c in enumerate(sorted({r[3] for r in rows}))}
    n_items, n_users = len(items), len(users)
    icat = np.zeros(n_items, int)
    for _, _, i, c in rows:
        icat[items[i]] = cats[c]
    day = np.array([r[0] for r in rows])
    user = np.array([users[r[1]] for r in rows])
    item = np.array([items[r[2]] for r in rows])
    test_cut = day.max() + 1 - 14

    def window(cut):
        """Signals fitted before `cut`, candidates and features for the cases of [cut, cut + 14)."""
        m = day < cut
        d, u, i = day[m], user[m], item[m]
        x = sp.csr_matrix((np.ones(len(u)), (u, i)), shape=(n_users, n_items))
        x.sum_duplicates()
        xb = x.copy()
        xb.data[:] = 1
        lines = np.asarray(x.sum(0)).ravel()
        buyers = np.asarray(xb.sum(0)).ravel()
        last = d.max()
        decayed = np.bincount(i, weights=0.5 ** ((last - d) / 14.0), minlength=n_items)
        first = np.full(n_items, 10**9)
        np.minimum.at(first, i, d)
        age = np.where(first < 10**9, last - first, 0)
        norm = 1 / np.sqrt(buyers + 1e-9)
        co = (xb.T @ xb).tocsr()
        co.setdiag(0)
        co.eliminate_zeros()
        sim = (sp.diags(norm) @ co @ sp.diags(norm)).tocsr()
        xc = sp.csr_matrix((np.ones(len(u)), (u, icat[i])), shape=(n_users, len(cats)))
        t = (day >= cut) & (day < cut + 14)
        targets = collections.defaultdict(set)
        for uu, ii in zip(user[t], item[t]):
            if xb[uu].nnz and xb[uu, ii] == 0:
                targets[uu].add(ii)
        cases = np.array(sorted(targets))
        top_lines = np.argsort(-lines, kind="stable")[:POOL]
        out = []
        for s in range(0, len(cases), 500):
            batch = cases[s : s + 500]
            co_scores = (xb[batch] @ sim).toarray()
            share = xc[batch].toarray()
            share = share / share.sum(1, keepdims=True)
            for j, uu in enumerate(batch):
                seen = xb[uu].indices
                ks = co_scores[j]
                ks[seen] = -1
                cand = np.unique(np.concatenate([top_lines, np.argpartition(-ks, POOL)[:POOL]]))
                cand = cand[~np.isin(cand, seen)]
                kn = ks[cand] / (ks.max() + 1e-9)
                feats = np.stack(
                    [
                        np.log1p(lines[cand]),
                        np.log1p(buyers[cand]),
                        np.log1p(decayed[cand]),
                        ks[cand],
                        kn,
                        share[j, icat[cand]],
                        np.log1p(age[cand]),
                        np.full(len(cand), np.log1p(len(seen))),
                    ],
                    1,
                )
                out.append((uu, cand, feats, targets[uu]))
        return out, lines, buyers, decayed

    val, *_ = window(test_cut - 14)
    test, lines, buyers, decayed = window(test_cut)

    def measure(score):
        rec = nd = 0.0
        for uu, cand, f, tg in test:
            top = cand[np.argsort(-score(cand, f), kind="stable")[:K]]
            hit = [1 if x in tg else 0 for x in top]
            rec += sum(hit) / len(tg)
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hit))
            nd += dcg / sum(1 / math.log2(r + 2) for r in range(min(len(tg), K)))
        return rec / len(test), nd / len(test)

    x = np.concatenate([f for _, _, f, _ in val])
    y = np.concatenate([np.isin(c, list(tg)) for _, c, _, tg in val]).astype(int)
    mu, sd = x.mean(0), x.std(0) + 1e-9
    lr = LogisticRegression(max_iter=2000).fit((x - mu) / sd, y)
    rows_out = [
        ("popularity (purchase lines)", lambda c, f: lines[c] + 0.0),
        ("popularity (distinct buyers)", lambda c, f: buyers[c] + 0.0),
        ("popularity, 14-day half-life", lambda c, f: decayed[c] + 0.0),
        ("co-occurrence (cosine over users)", lambda c, f: f[:, 3]),
        ("co-occurrence 0.5 + popularity 0.5", lambda c, f: 0.5 * f[:, 4] + 0.5 * lines[c] / lines.max()),
        ("popularity x (1 + 10 subclass share)", lambda c, f: lines[c] * (1 + 10 * f[:, 5])),
        ("logistic regression on the validation window", lambda c, f: ((f - mu) / sd) @ lr.coef_[0]),
    ]
    base = None
    for name, score in rows_out:
        rec, nd = measure(score)
        base = base or (rec, nd)
        print(json.dumps({"method": name, "cases": len(test), "recall@20": round(rec, 4), "ndcg@20": round(nd, 4),
                          "recall_ratio": round(rec / base[0], 3), "ndcg_ratio": round(nd / base[1], 3)}), flush=True)


if __name__ == "__main__":
    main()
