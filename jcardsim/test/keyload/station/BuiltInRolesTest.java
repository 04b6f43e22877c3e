package keyload.station;

import static org.junit.Assert.assertEquals;

import org.junit.Test;

/** The built-in roles install the real keyload applets (built by compile-applets) at their AIDs. */
public class BuiltInRolesTest {

    /** INFO byte 1 is the role, byte 2 the life cycle (PROTOCOL.md 4.1). */
    private static final int INFO_ROLE = 1;
    private static final int INFO_LIFE_CYCLE = 2;
    private static final byte LIFE_CYCLE_SETUP = 0x01;

    /** What the card answers to a SELECT of an AID it does not hold. */
    private static final int SW_APPLET_NOT_FOUND = 0x6A82;

    private static byte[] select(String role) {
        byte[] aid = new Roles().lookup(role).aid();
        byte[] select = new byte[5 + aid.length];
        select[1] = (byte) 0xA4;
        select[2] = 0x04;
        select[4] = (byte) aid.length;
        System.arraycopy(aid, 0, select, 5, aid.length);
        return select;
    }

    private static void assertBlankCardOfRole(String role, byte roleByte) {
        SimulatedCard card = SimulatedCard.blank(new Roles().lookup(role), CardProtocol.T1);
        byte[] response = card.process(select(role));
        assertEquals(role + " SELECT", Apdus.SW_OK, Apdus.sw(response));
        assertEquals(roleByte, response[INFO_ROLE]);
        assertEquals(LIFE_CYCLE_SETUP, response[INFO_LIFE_CYCLE]);
    }

    @Test
    public void asAndEiCardsLiveSideBySide() {
        SimulatedCard as = SimulatedCard.blank(new Roles().lookup("AS"), CardProtocol.T1);
        SimulatedCard ei = SimulatedCard.blank(new Roles().lookup("EI"), CardProtocol.T1);
        assertEquals(Apdus.SW_OK, Apdus.sw(as.process(select("AS"))));
        assertEquals("an AS card holds no EI applet", SW_APPLET_NOT_FOUND, Apdus.sw(as.process(select("EI"))));
        assertEquals(Apdus.SW_OK, Apdus.sw(ei.process(select("EI"))));
        assertEquals("an EI card holds no AS applet", SW_APPLET_NOT_FOUND, Apdus.sw(ei.process(select("AS"))));
    }

    @Test
    public void asRoleIsTheAsAppletInSetup() {
        assertBlankCardOfRole("AS", (byte) 0x01);
    }

    @Test
    public void eiRoleIsTheEiAppletInSetup() {
        assertBlankCardOfRole("EI", (byte) 0x02);
    }
}
