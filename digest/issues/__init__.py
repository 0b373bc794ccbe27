"""Issues: select the items and render a draft (select), freeze it with its recipients
(freeze), where issues stand (state), and staff actions on them (manage)."""
