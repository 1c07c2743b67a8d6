"""A database trigger that refuses any UPDATE of an issued invoice or its lines (deletes go with the tenant)."""

from django.db import migrations

SQL = """
CREATE OR REPLACE FUNCTION billing_refuse_invoice_update() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'issued invoices are immutable (% %); issue a credit note', TG_TABLE_NAME, OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER billing_invoice_immutable BEFORE UPDATE ON billing_invoice
    FOR EACH ROW EXECUTE FUNCTION billing_refuse_invoice_update();
CREATE TRIGGER billing_invoiceline_immutable BEFORE UPDATE ON billing_invoiceline
    FOR EACH ROW EXECUTE FUNCTION billing_refuse_invoice_update();
"""

REVERSE = """
DROP TRIGGER IF EXISTS billing_invoiceline_immutable ON billing_invoiceline;
DROP TRIGGER IF EXISTS billing_invoice_immutable ON billing_invoice;
DROP FUNCTION IF EXISTS billing_refuse_invoice_update();
"""


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunSQL(SQL, REVERSE)]
