-- Why: reverses 0021_usage_rollups. costSummary reads every usage row of its range again; usage
-- itself is untouched (the rollups are derived from it).

drop trigger usage_roll_up_update on usage;
drop trigger usage_roll_up on usage;
drop function app.roll_up_usage();
drop table usage_rollups;
