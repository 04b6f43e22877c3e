package keyload.applet;

/**
 * The wire contract (docs/PROTOCOL.md, version 1 with the v1.1 amendments of §8) as named constants: the
 * one place both applets take command codes, status words, life-cycle values and wire layouts from. Used
 * through {@code import static keyload.applet.Protocol.*}; the compiler inlines every value.
 */
public final class Protocol {

    private Protocol() {
    }

    public static final byte PROTOCOL_VERSION = (byte) 0x01;

    // ---------------------------------------------------------------- classes and instructions
    public static final byte CLA_ISO = (byte) 0x00;
    public static final byte CLA_KEYLOAD = (byte) 0x80;

    public static final byte INS_SELECT = (byte) 0xA4;
    public static final byte INS_VERIFY = (byte) 0x20;
    public static final byte INS_GET_INFO = (byte) 0x40;
    public static final byte INS_LIST_KEYS = (byte) 0x42;
    public static final byte INS_EXPORT_KEY = (byte) 0x4A;
    public static final byte INS_IMPORT_KEY = (byte) 0x4C;
    public static final byte INS_SET_TRANSPORT_KEY = (byte) 0x50;
    public static final byte INS_SET_SERIAL = (byte) 0x52;
    public static final byte INS_PUT_APP_KEY = (byte) 0x54;
    public static final byte INS_DEFINE_SLOT = (byte) 0x56;
    public static final byte INS_SET_RETRY_LIMIT = (byte) 0x58;
    public static final byte INS_SET_PIN = (byte) 0x5A;
    public static final byte INS_LOCK = (byte) 0x5E;
    public static final byte INS_GET_CHALLENGE = (byte) 0x84;
    /** Transport key rotation (docs/PROTOCOL.md §9, a keyload extension): AS. */
    public static final byte INS_PUT_NEXT_TRANSPORT_KEY = (byte) 0x60;
    public static final byte INS_EXPORT_TRANSPORT_KEY = (byte) 0x62;
    public static final byte INS_RETIRE_TRANSPORT_KEY = (byte) 0x64;
    /** Transport key rotation (§9): EI. */
    public static final byte INS_IMPORT_TRANSPORT_KEY = (byte) 0x66;
    public static final byte INS_INTERNAL_AUTHENTICATE = (byte) 0x88;

    public static final byte P1_SELECT_BY_NAME = (byte) 0x04;
    public static final byte P2_OPERATOR_PIN = (byte) 0x81;

    // ---------------------------------------------------------------- status words (PROTOCOL.md §4.4)
    public static final short SW_WRONG_LENGTH = (short) 0x6700;
    /** Low nibble: tries left. */
    public static final short SW_VERIFICATION_FAILED = (short) 0x63C0;
    public static final short SW_SECURITY_STATUS_NOT_SATISFIED = (short) 0x6982;
    public static final short SW_BLOCKED = (short) 0x6983;
    public static final short SW_CONDITIONS_NOT_SATISFIED = (short) 0x6985;
    public static final short SW_COMMAND_NOT_ALLOWED = (short) 0x6986;
    public static final short SW_INCORRECT_DATA = (short) 0x6A80;
    /** Not in PROTOCOL.md §4.4: a SELECT for an AID no applet has, passed on to us by the runtime. */
    public static final short SW_APPLICATION_NOT_FOUND = (short) 0x6A82;
    /** keyload addition (docs/PROTOCOL.md §7): a 24-byte key on a card without AES-192. */
    public static final short SW_FUNCTION_NOT_SUPPORTED = (short) 0x6A81;
    public static final short SW_NOT_ENOUGH_MEMORY = (short) 0x6A84;
    public static final short SW_INCORRECT_P1P2 = (short) 0x6A86;
    public static final short SW_REFERENCE_NOT_FOUND = (short) 0x6A88;
    public static final short SW_INS_NOT_SUPPORTED = (short) 0x6D00;
    public static final short SW_CLA_NOT_SUPPORTED = (short) 0x6E00;

    // ---------------------------------------------------------------- roles and life cycle
    public static final byte ROLE_AS = (byte) 0x01;
    public static final byte ROLE_EI = (byte) 0x02;

    public static final byte STATE_SETUP = (byte) 0x01;
    public static final byte STATE_OPERATIONAL = (byte) 0x02;
    public static final byte STATE_BLOCKED = (byte) 0xFF;

    // ---------------------------------------------------------------- keys and references
    public static final short AES_128_BYTES = 16;
    public static final short AES_192_BYTES = 24;
    public static final short AES_256_BYTES = 32;
    public static final short MAX_KEY_BYTES = AES_256_BYTES;
    public static final short BLOCK_BYTES = 16;

    public static final byte USAGE_AUTHENTICATE = (byte) 0x01;
    public static final byte USAGE_MAC = (byte) 0x02;
    public static final byte USAGE_ENCRYPT = (byte) 0x04;

    /** Le = 00 in a short APDU: what {@code APDU.setOutgoing} answers for it. */
    public static final short LE_ANY = 256;

    /** Key flags (AS) and slot flags (EI) both use bit 0 only. */
    public static final byte FLAG_DIVERSIFIED = (byte) 0x01;
    public static final byte FLAG_ACCEPTS_IMPORT = (byte) 0x01;
    public static final byte FLAGS_DEFINED = (byte) 0x01;

    public static final byte REF_NONE = (byte) 0x00;
    public static final byte REF_MAX = (byte) 0x7F;
    public static final short MAX_ENTRIES = 16;
    public static final short EXPORT_UNLIMITED = (short) 0xFFFF;

    public static final short SN_MIN_BYTES = 8;
    public static final short SN_MAX_BYTES = 16;
    public static final short PIN_MIN_BYTES = 4;
    public static final short PIN_MAX_BYTES = 16;
    public static final byte PIN_TRY_LIMIT = 3;
    public static final byte RETRY_LIMIT_DEFAULT = 10;
    public static final byte RETRY_LIMIT_MAX = 15;
    public static final short CHALLENGE_BYTES = 16;
    public static final short MAX_AUTHENTICATE_BYTES = 64;

    // ---------------------------------------------------------------- derivation (PROTOCOL.md §2)
    /** KDF input: 11 zero bytes, label, 00, L (2 bytes), counter, context. */
    public static final short KDF_LABEL = 11;
    public static final short KDF_SEPARATOR = 12;
    public static final short KDF_LENGTH = 13;
    public static final short KDF_COUNTER = 15;
    public static final short KDF_CONTEXT = 16;
    public static final byte LABEL_T1 = (byte) 0x10;
    public static final byte LABEL_K_ENC = (byte) 0x11;
    public static final byte LABEL_K_MAC = (byte) 0x12;
    public static final byte LABEL_UNIT = (byte) 0x20;

    public static final short KCV_BYTES = 3;
    public static final short SAS_BYTES = 8;
    public static final short CAS_BYTES = 16;

    // ---------------------------------------------------------------- key block (PROTOCOL.md §3)
    public static final byte BLOCK_FORMAT = (byte) 0x01;
    /** §9: the block carrying a new transport key; REF2, usage, flags and REF1 are 00. */
    public static final byte TRANSPORT_BLOCK_FORMAT = (byte) 0x02;
    public static final short HEADER_BYTES = 8;
    public static final short HDR_FORMAT = 0;
    public static final short HDR_REF2 = 1;
    public static final short HDR_KEY_LENGTH = 2;
    public static final short HDR_USAGE = 3;
    public static final short HDR_VERSION = 4;
    public static final short HDR_FLAGS = 6;
    public static final short HDR_REF1 = 7;

    // ---------------------------------------------------------------- INFO (SELECT, GET INFO)
    public static final short INFO_VERSION = 0;
    public static final short INFO_ROLE = 1;
    public static final short INFO_STATE = 2;
    public static final short INFO_T_LENGTH = 3;
    public static final short INFO_T_KCV = 4;
    public static final short INFO_TRIES_LEFT = 7;
    public static final short INFO_TRY_LIMIT = 8;
    public static final short INFO_ENTRIES = 9;
    public static final short INFO_SN_LENGTH = 10;
    public static final short INFO_SN = 11;
    /** §9: after the SN, the transport key's version, then the next one's length, KCV and version (AS). */
    public static final short INFO_EXT_T_VERSION = 0;
    public static final short INFO_EXT_NEXT_LENGTH = 2;
    public static final short INFO_EXT_NEXT_KCV = 3;
    public static final short INFO_EXT_NEXT_VERSION = 6;
    public static final short INFO_EXT_BYTES = 8;

    // ---------------------------------------------------------------- transport key versions (§9)
    /** The version of a T set by SET TRANSPORT KEY; a rotation only moves it forward. */
    public static final short T_VERSION_INITIAL = 1;
    public static final short VERSION_BYTES = 2;

    // ---------------------------------------------------------------- LIST KEYS entry
    public static final short ENTRY_REF = 0;
    public static final short ENTRY_STATE = 1;
    public static final short ENTRY_KEY_LENGTH = 2;
    public static final short ENTRY_USAGE = 3;
    public static final short ENTRY_VERSION = 4;
    public static final short ENTRY_FLAGS = 6;
    public static final short ENTRY_KCV = 7;
    public static final short ENTRY_COUNT = 10;
    public static final short ENTRY_LIMIT = 12;
    public static final short ENTRY_BYTES = 14;

    public static final byte ENTRY_EMPTY = (byte) 0x00;
    public static final byte ENTRY_LOADED = (byte) 0x01;
}
