/** The spend page: a range form, the stacked chart of cost per day by model, the totals, the users' budgets. */
import type { AppRole } from '../../db/config.ts';
import { dayText, type BudgetState, type DayRange, type SpendByDay } from '../spend.ts';
import { count, html, jsonScript, type Html } from './html.ts';

/** The range form. */
export function spendForm(tenant: { id: string; role: AppRole }, range: DayRange): Html {
  const lastDay = dayText(new Date(range.to.getTime() - 86_400_000));
  return html`<form method="get" action="/tenants/${tenant.id}/spend" class="filter" id="range">
    <input type="hidden" name="role" value="${tenant.role}">
    <label>from <input type="date" name="from" value="${dayText(range.from)}"></label>
    <label>to <input type="date" name="to" value="${lastDay}"></label>
    <button type="submit">show</button>
    <span class="hint">UTC days, both included</span>
  </form>`;
}

/** The chart (drawn by /assets/spend.js with Chart.js from the JSON block) and the totals per model. */
export function spendChart(spend: SpendByDay): Html {
  if (spend.series.length === 0) return html`<p class="empty" id="spend-total">No usage in this range.</p>`;
  return html`<script src="/assets/chart.umd.min.js" defer></script><script src="/assets/spend.js" defer></script>
  <div class="chart"><canvas id="spend-chart" aria-label="cost per day by model" role="img"></canvas></div>
  ${jsonScript('spend-data', { days: spend.days, series: spend.series.map((s) => ({ label: s.modelName, costs: s.costs })) })}
  <p id="spend-total">Total <strong>${spend.total}</strong> over ${spend.days.length} days.</p>
  <table class="grid" id="spend-by-model"><thead><tr><th>model</th><th class="num">calls</th><th class="num">cost</th></tr></thead><tbody>
  ${spend.series.map((s) => html`<tr data-model="${s.modelId}"><td>${s.modelName}</td><td class="num">${count(s.calls)}</td><td class="num">${s.total}</td></tr>`)}
  </tbody></table>`;
}

/** The users' budget state. */
export function budgetTable(users: BudgetState[], more: boolean): Html {
  if (users.length === 0) return html`<p class="empty">No users visible.</p>`;
  return html`<table class="grid" id="budgets">
  <thead><tr><th>user</th><th>status</th><th class="num">budget</th><th class="num">remaining</th><th>used</th><th class="num">spent in range</th></tr></thead>
  <tbody>
  ${users.map((u) => {
    const used = u.budget === null || u.remaining === null || Number(u.budget) === 0 ? null : 1 - Number(u.remaining) / Number(u.budget);
    return html`<tr data-user="${u.userId}">
      <td>${u.email}</td><td>${u.status}</td>
      <td class="num">${u.budget ?? html`<span class="null">no limit</span>`}</td>
      <td class="num">${u.remaining ?? ''}</td>
      <td>${used === null ? '' : html`<meter min="0" max="1" low="0.7" high="0.9" optimum="0" value="${used.toFixed(4)}"></meter> ${Math.round(used * 100)}%`}</td>
      <td class="num">${u.spentInRange}</td>
    </tr>`;
  })}
  </tbody>
</table>
${more ? html`<p class="hint">Only the first ${count(users.length)} users are shown.</p>` : ''}`;
}
